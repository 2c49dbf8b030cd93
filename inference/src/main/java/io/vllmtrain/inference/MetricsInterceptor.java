package io.vllmtrain.inference;

import io.grpc.ForwardingServerCall;
import io.grpc.ForwardingServerCallListener;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.util.concurrent.atomic.AtomicBoolean;

/** Counts every RPC by method and status code and observes its duration (cancelled calls count as CANCELLED). */
final class MetricsInterceptor implements ServerInterceptor {
  private final InferenceMetrics metrics;

  MetricsInterceptor(InferenceMetrics metrics) {
    this.metrics = metrics;
  }

  @Override
  public <Q, A> ServerCall.Listener<Q> interceptCall(ServerCall<Q, A> call, Metadata headers,
      ServerCallHandler<Q, A> next) {
    long start = System.nanoTime();
    String method = call.getMethodDescriptor().getServiceName() == null
        ? call.getMethodDescriptor().getFullMethodName()
        : simpleName(call.getMethodDescriptor().getServiceName()) + "/" + call.getMethodDescriptor().getBareMethodName();
    AtomicBoolean recorded = new AtomicBoolean();
    Runnable cancelled = () -> record(recorded, method, Status.Code.CANCELLED, start);
    ServerCall<Q, A> counted = new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
      @Override
      public void close(Status status, Metadata trailers) {
        record(recorded, method, status.getCode(), start);
        super.close(status, trailers);
      }
    };
    return new ForwardingServerCallListener.SimpleForwardingServerCallListener<>(next.startCall(counted, headers)) {
      @Override
      public void onCancel() {
        cancelled.run();
        super.onCancel();
      }
    };
  }

  private void record(AtomicBoolean recorded, String method, Status.Code code, long start) {
    if (recorded.compareAndSet(false, true)) {
      metrics.requests.labelValues(method, code.name()).inc();
      metrics.requestDuration.labelValues(method).observe((System.nanoTime() - start) / 1e9);
    }
  }

  private static String simpleName(String serviceName) {
    int dot = serviceName.lastIndexOf('.');
    return dot < 0 ? serviceName : serviceName.substring(dot + 1);
  }
}
