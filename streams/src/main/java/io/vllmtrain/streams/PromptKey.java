package io.vllmtrain.streams;

import io.vllmtrain.events.ChatMessage;
import io.vllmtrain.events.Prompt;
import java.text.Normalizer;
import java.util.Locale;

/**
 * The key under which responses to "the same prompt" from different requests meet: base model plus the prompt
 * text normalised (Unicode NFKC, lower case, runs of white space collapsed to one space, trimmed). Chat prompts
 * normalise every message as {@code role: content}, one per line, so the system prompt and history count too.
 */
final class PromptKey {
  private PromptKey() {}

  static String of(String baseModel, Prompt prompt) {
    return Hashing.id(baseModel, normalise(prompt));
  }

  static String normalise(Prompt prompt) {
    StringBuilder text = new StringBuilder();
    if (prompt.getText() != null) {
      text.append(prompt.getText());
    } else {
      for (ChatMessage m : prompt.getMessages()) {
        text.append(m.getRole()).append(": ").append(m.getContent()).append('\n');
      }
    }
    String folded = Normalizer.normalize(text, Normalizer.Form.NFKC).toLowerCase(Locale.ROOT);
    return folded.replaceAll("\\s+", " ").strip();
  }
}
