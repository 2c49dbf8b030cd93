package io.vllmtrain.inference;

import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.ForwardingClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import java.util.concurrent.TimeUnit;

/**
 * A channel to an engine whose generation calls can be made to throw when they start, as gRPC's in-process
 * transport does when its server shuts down at that moment ({@code NullPointerException: 'executor' must not be
 * null}). Everything else goes to the real channel.
 */
final class StartFailingChannel extends ManagedChannel {
  private final ManagedChannel delegate;
  volatile boolean failToStart;

  StartFailingChannel(ManagedChannel delegate) {
    this.delegate = delegate;
  }

  @Override
  public <Q, R> ClientCall<Q, R> newCall(MethodDescriptor<Q, R> method, CallOptions options) {
    ClientCall<Q, R> call = delegate.newCall(method, options);
    if (!failToStart || !method.getBareMethodName().startsWith("Generate")) {
      return call;
    }
    return new ForwardingClientCall.SimpleForwardingClientCall<>(call) {
      @Override
      public void start(Listener<R> listener, Metadata headers) {
        throw new NullPointerException("'executor' must not be null.");
      }
    };
  }

  @Override
  public String authority() {
    return delegate.authority();
  }

  @Override
  public ManagedChannel shutdown() {
    delegate.shutdown();
    return this;
  }

  @Override
  public boolean isShutdown() {
    return delegate.isShutdown();
  }

  @Override
  public boolean isTerminated() {
    return delegate.isTerminated();
  }

  @Override
  public ManagedChannel shutdownNow() {
    delegate.shutdownNow();
    return this;
  }

  @Override
  public boolean awaitTermination(long timeout, TimeUnit unit) throws InterruptedException {
    return delegate.awaitTermination(timeout, unit);
  }
}
