import { describe, expect, it } from "vitest";
import { deferred, message, RecordingSink, rig } from "./scripted.ts";

/** A three-line scene in "c", held once its first line is posted until `gate` is resolved. */
async function sceneHeldAfterFirstLine({ conversation, openai }: ReturnType<typeof rig>): Promise<{ sink: RecordingSink; gate: { resolve: () => void } }> {
  conversation.setScene("c", 3);
  const sink = new RecordingSink();
  const gate = deferred();
  const firstLine = deferred();
  sink.sceneGate = gate.promise;
  sink.onSceneLine = () => firstLine.resolve();
  conversation.submit(message("c", "hi"), sink);
  (await openai.generation(0)).say("Sure.\nRoss: one\nMonica: two\nRachel: three").end();
  await firstLine.promise;
  return { sink, gate };
}

describe("scenes", () => {
  it("off by default: the follow-on scene is cut and the cast stops the model", async () => {
    const { conversation, openai } = rig();
    const sink = new RecordingSink();
    conversation.submit(message("c", "hi"), sink);
    const g = await openai.generation(0);
    expect(g.request.stop).toContain("\nRoss:");
    g.say("Oh, I don't know.\nRoss: (entering) Hey Ben!").end();
    expect(await sink.finished.promise).toBe("Oh, I don't know.");
    await conversation.idle("c");
    expect(sink.scene).toEqual([]);
  });

  it("on: the reply, then each kept line under its character, remembered line by line; only a user's line stops the model", async () => {
    const { conversation, openai, store } = rig();
    conversation.setScene("c", 2);
    const sink = new RecordingSink();
    conversation.submit(message("c", "hi"), sink);
    const g = await openai.generation(0);
    expect(g.request.stop).toEqual(["\nAlice:"]);
    g.say("Oh, I don't know.\nRoss: (entering) Hey Ben!\n", "Monica: Hi!\nRachel: and me").end();
    expect(await sink.finished.promise).toBe("Oh, I don't know.");
    await conversation.idle("c");
    expect(sink.scene).toEqual(["Ross: *(entering)* Hey Ben!", "Monica: Hi!"]);
    expect(store.loadWindow("c").map((t) => `${t.author}: ${t.text}`)).toEqual(["Alice: hi", "Friend: Oh, I don't know.", "Ross: *(entering)* Hey Ben!", "Monica: Hi!"]);
    // The next prompt reads as the script of who said what.
    conversation.submit(message("c", "again"), new RecordingSink());
    expect((await openai.generation(1)).prompt).toEqual(["Alice: hi", "Friend: Oh, I don't know.", "Ross: *(entering)* Hey Ben!", "Monica: Hi!", "Alice: again"]);
  });

  it("a scene that tries to speak for the user stops before that line", async () => {
    const { conversation, openai } = rig();
    conversation.setScene("c", 3);
    const sink = new RecordingSink();
    conversation.submit(message("c", "hi", "Bob"), sink);
    (await openai.generation(0)).say("Sure.\nJoey: How you doin'?\nBob: I'm great, Joey!\nRoss: hi").end();
    await sink.finished.promise;
    await conversation.idle("c");
    expect(sink.scene).toEqual(["Joey: How you doin'?"]);
  });

  it("a new message stops a scene in flight: the lines posted stay, the rest are not posted, and the message is answered next", async () => {
    const r = rig();
    const { conversation, openai, store } = r;
    const { sink, gate } = await sceneHeldAfterFirstLine(r);
    const next = new RecordingSink();
    conversation.submit(message("c", "wait, stop"), next);
    gate.resolve();
    const g2 = await openai.generation(1);
    expect(sink.scene).toEqual(["Ross: one"]);
    expect(g2.prompt).toEqual(["Alice: hi", "Friend: Sure.", "Ross: one", "Alice: wait, stop"]);
    g2.say("Okay.").end();
    expect(await next.finished.promise).toBe("Okay.");
    await conversation.idle("c");
    expect(store.loadWindow("c").map((t) => t.author)).toEqual(["Alice", "Friend", "Ross", "Alice", "Friend"]);
  });

  it("the shutdown stops a scene in flight: the message counts as answered, the lines posted are remembered, the rest are dropped", async () => {
    const r = rig();
    const { conversation, openai, store } = r;
    const { sink, gate } = await sceneHeldAfterFirstLine(r);
    const closing = conversation.close(5000);
    gate.resolve();
    await closing;
    expect(sink.scene).toEqual(["Ross: one"]);
    expect(store.loadWindow("c").map((t) => `${t.author}: ${t.text}`)).toEqual(["Alice: hi", "Friend: Sure.", "Ross: one"]);
    expect(store.unanswered()).toEqual([]);
  });

  it("survives a restart and /reset", async () => {
    const { conversation, store } = rig();
    conversation.setScene("c", 4);
    conversation.reset("c");
    expect(rig({ store }).conversation.sceneOf("c")).toBe(4);
  });
});
