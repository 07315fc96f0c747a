import { describe, expect, it } from "vitest";
import { findCastMember } from "../../src/core/cast.ts";
import { SqliteStore } from "../../src/store/sqlite.ts";
import { message, RecordingSink, rig } from "./scripted.ts";

describe("/persona in a channel", () => {
  it("a switch mid-reply leaves the reply in flight to the character that started it; the next turn speaks as the new one", async () => {
    const { conversation, openai, settings, store } = rig();
    const joey = findCastMember(settings.cast, "Joey")!;
    const [s1, s2] = [new RecordingSink(), new RecordingSink()];
    conversation.submit(message("c", "one"), s1);
    const first = await openai.generation(0);
    conversation.setPersona("c", joey);
    conversation.submit(message("c", "two"), s2);
    expect(conversation.personaOf("c").name).toBe("Joey");
    // Friend's turn: a `Joey:` line is someone else's, so it is cut.
    first.say("Sure thing.\nJoey: hey!").end();
    expect(await s1.finished.promise).toBe("Sure thing.");
    expect(s1.speakers).toEqual(["Friend"]);
    expect(first.request.persona.name).toBe("Friend");
    expect(first.request.stop).toContain("\nJoey:");

    const second = await openai.generation(1);
    expect(second.request.persona.name).toBe("Joey");
    expect(second.request.persona.systemPrompt).toContain("Your name is Joey.");
    expect(second.request.stop).toContain("\nFriend:");
    expect(second.request.stop).not.toContain("\nJoey:");
    // The window records each reply under the character that said it.
    expect(second.prompt).toEqual(["Alice: one", "Friend: Sure thing.", "Alice: two"]);
    // Joey's own label is stripped; Friend's is a follow-on now.
    second.say("Joey Tribbiani: How you doin'?\nFriend: hi").end();
    expect(await s2.finished.promise).toBe("How you doin'?");
    expect(s2.speakers).toEqual(["Joey"]);
    await conversation.idle("c");
    expect(store.loadWindow("c").map((t) => `${t.author}: ${t.text}`)).toEqual(["Alice: one", "Friend: Sure thing.", "Alice: two", "Joey: How you doin'?"]);
  });

  it("survives a restart and /reset, and a stored name no longer in the cast falls back to the persona", async () => {
    const store = new SqliteStore({ path: ":memory:" });
    const first = rig({ store });
    first.conversation.setPersona("c", findCastMember(first.settings.cast, "Rachel")!);
    await first.conversation.close(0);
    const second = rig({ store });
    expect(second.conversation.personaOf("c").name).toBe("Rachel");
    second.conversation.reset("c");
    expect(second.conversation.personaOf("c").name).toBe("Rachel");
    store.setPersona("d", "Gunther"); // an operator removed him from the cast
    expect(second.conversation.personaOf("d").name).toBe("Friend");
    expect(second.conversation.personaOf("e").name).toBe("Friend");
  });

  it("a user named after a cast member cannot speak as that character", async () => {
    const { conversation, openai } = rig();
    conversation.submit(message("c", "I'm the real one", "Joey"), new RecordingSink());
    expect((await openai.generation(0)).prompt).toEqual(["User Joey: I'm the real one"]);
  });
});

describe("a reply to a character's message", () => {
  it("left unanswered at a restart, is answered after it by that character, not the channel's persona", async () => {
    const store = new SqliteStore({ path: ":memory:" });
    const first = rig({ store });
    const toMonica = { ...message("c", "what's for dinner?"), character: "Monica" };
    const toNobody = message("c", "and for dessert?");
    const stuck = new RecordingSink();
    stuck.finishGate = new Promise(() => {}); // killed before the replies were posted
    first.conversation.submit(toMonica, stuck);
    first.conversation.submit(toNobody, new RecordingSink());
    (await first.openai.generation(0)).say("Lasagna.").end();

    const restarted = rig({ store });
    const sinks = new Map<string, RecordingSink>();
    const counts = await restarted.conversation.catchUp({
      maxAgeMs: 60_000,
      sinkFor: async (m) => {
        const sink = new RecordingSink();
        sinks.set(m.turn.messageId, sink);
        return sink;
      },
    });
    expect(counts.resumed).toBe(2);
    const g = await restarted.openai.generation(0);
    expect(g.request.persona.name).toBe("Monica");
    expect(g.prompt).toEqual(["Alice: what's for dinner?"]);
    g.say("Lasagna!").end();
    expect(await sinks.get(toMonica.id)!.finished.promise).toBe("Lasagna!");
    expect(sinks.get(toMonica.id)!.speakers).toEqual(["Monica"]);
    const next = await restarted.openai.generation(1);
    expect(next.request.persona.name).toBe("Friend");
    expect(next.prompt).toEqual(["Alice: what's for dinner?", "Monica: Lasagna!", "Alice: and for dessert?"]);
  });
});
