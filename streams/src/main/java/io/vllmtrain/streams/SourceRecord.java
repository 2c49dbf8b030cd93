package io.vllmtrain.streams;

/** Where an input record came from and its original bytes, so a dead letter can carry them unchanged. */
record SourceRecord(String topic, int partition, long offset, byte[] key, byte[] value) {}
