package io.vllmtrain.stack;

/** A problem starting or stopping the stack, with a message a person can act on. */
public class StackException extends RuntimeException {
  public StackException(String message) {
    super(message);
  }

  public StackException(String message, Throwable cause) {
    super(message, cause);
  }
}
