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
