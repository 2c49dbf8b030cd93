package io.vllmtrain.streams;

import io.vllmtrain.events.ChatMessage;
import io.vllmtrain.events.Prompt;
import java.text.Normalizer;

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
    CharSequence folded = isAscii(text) ? text : Normalizer.normalize(text, Normalizer.Form.NFKC);
    // Lower case, runs of white space as one space, trimmed; one pass (this runs for every rating).
    StringBuilder out = new StringBuilder(folded.length());
    boolean pendingSpace = false;
    for (int i = 0; i < folded.length(); ) {
      int c = Character.codePointAt(folded, i);
      i += Character.charCount(c);
      if (Character.isWhitespace(c)) {
        pendingSpace = out.length() > 0;
        continue;
      }
      if (pendingSpace) {
        out.append(' ');
        pendingSpace = false;
      }
      out.appendCodePoint(Character.toLowerCase(c));
    }
    return out.toString();
  }

  /** NFKC leaves ASCII unchanged, so most prompts skip it. */
  private static boolean isAscii(CharSequence s) {
    for (int i = 0; i < s.length(); i++) {
      if (s.charAt(i) >= 0x80) {
        return false;
      }
    }
    return true;
  }
}
