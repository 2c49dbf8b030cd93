package io.vllmtrain.streams;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import io.vllmtrain.events.ChatMessage;
import io.vllmtrain.events.Prompt;
import java.util.List;
import org.junit.jupiter.api.Test;

class PromptKeyTest {
  private static Prompt text(String t) {
    return Prompt.newBuilder().setText(t).setMessages(List.of()).build();
  }

  @Test
  void caseWhiteSpaceAndCompatibilityFormsDoNotMatter() {
    assertEquals("what is 2+2?", PromptKey.normalise(text("  What\tis\n\n 2+2?  ")));
    assertEquals("file full", PromptKey.normalise(text("\uFB01le \uFF26\uFF35\uFF2C\uFF2C")), "NFKC: ligature, full width");
    assertEquals(PromptKey.of("m", text("Hello  World")), PromptKey.of("m", text("hello world")));
  }

  @Test
  void wordsBaseModelAndChatRolesDo() {
    assertNotEquals(PromptKey.of("m", text("hello world")), PromptKey.of("m", text("helloworld")));
    assertNotEquals(PromptKey.of("m", text("hello")), PromptKey.of("other-model", text("hello")));
    Prompt chat = Prompt.newBuilder().setText(null)
        .setMessages(List.of(new ChatMessage("system", "Be brief."), new ChatMessage("user", "Hello"))).build();
    assertEquals("system: be brief. user: hello", PromptKey.normalise(chat));
  }
}
