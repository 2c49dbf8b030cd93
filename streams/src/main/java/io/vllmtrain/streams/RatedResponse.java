package io.vllmtrain.streams;

import io.vllmtrain.events.Prompt;

/**
 * A response with a user's current rating, sent (keyed by {@link PromptKey}) to the cross-request pairing.
 */
record RatedResponse(String promptKey, String requestId, String responseId, String feedbackId, String userId,
                     double rating, String text, String adapterVersion, String baseModel, Prompt prompt,
                     long timestamp) {}
