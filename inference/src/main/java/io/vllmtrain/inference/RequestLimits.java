package io.vllmtrain.inference;

/**
 * Size limits of the public API, checked before anything is routed or recorded. The defaults keep the largest
 * event a request can cause (a PromptEvent of a full prompt with every stop string, or a FeedbackEvent with a full
 * edit) under a third of Kafka's default 1 MB producer and topic limit, so an accepted request is never an event
 * Kafka refuses. Sizes of text are UTF-8 bytes; ids are counted in characters.
 *
 * @param promptBytes the prompt's text, one message's content, and all messages' content together
 *     ({@code limits.prompt.bytes}, 262144)
 * @param promptMessages messages in a chat prompt ({@code limits.prompt.messages}, 256)
 * @param stopStrings stop strings in the sampling parameters ({@code limits.stop.strings}, 16)
 * @param stopBytes one stop string ({@code limits.stop.bytes}, 512)
 * @param idChars user_id, session_id, adapter_version, request_id and response ids ({@code limits.id.chars}, 256)
 * @param editedTextBytes the corrected text of EDIT feedback ({@code limits.edited.text.bytes}, 131072)
 */
public record RequestLimits(int promptBytes, int promptMessages, int stopStrings, int stopBytes, int idChars,
    int editedTextBytes) {
  public static final RequestLimits DEFAULTS = new RequestLimits(256 * 1024, 256, 16, 512, 256, 128 * 1024);
}
