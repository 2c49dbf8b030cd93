package io.vllmtrain.streams;

import io.vllmtrain.events.PreferencePair;

/**
 * A pair and its registry encoding, made once where the pair is formed and shared by the pairs sink, the batch
 * store and the batch; the encoding's length is what the byte limits count.
 */
record EncodedPair(PreferencePair pair, byte[] bytes) {}
