package io.vllmtrain.inference;

import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import io.vllmtrain.inference.AdapterRollout.VersionView;
import io.vllmtrain.proto.v1.ActivateRequest;
import io.vllmtrain.proto.v1.AdapterServiceGrpc;
import io.vllmtrain.proto.v1.AdapterVersionInfo;
import io.vllmtrain.proto.v1.GetActiveRequest;
import io.vllmtrain.proto.v1.ListVersionsRequest;
import io.vllmtrain.proto.v1.ListVersionsResponse;
import io.vllmtrain.proto.v1.PauseRolloutRequest;
import io.vllmtrain.proto.v1.ResumeRolloutRequest;
import io.vllmtrain.proto.v1.RollbackRequest;
import io.vllmtrain.proto.v1.RolloutState;
import io.vllmtrain.proto.v1.VersionStatus;
import java.util.concurrent.CompletableFuture;

/**
 * {@code AdapterService}: the versions and their status and training metrics, the active version, and the
 * operator's controls (activate and pin, roll back, pause and resume automatic rollout).
 */
final class AdapterServiceImpl extends AdapterServiceGrpc.AdapterServiceImplBase {
  private final RolloutController controller;

  AdapterServiceImpl(RolloutController controller) {
    this.controller = controller;
  }

  @Override
  public void listVersions(ListVersionsRequest request, StreamObserver<ListVersionsResponse> out) {
    ListVersionsResponse.Builder list = ListVersionsResponse.newBuilder();
    controller.rollout().versions().forEach(v -> list.addVersions(info(v)));
    list.setRollout(state(controller.rollout().state()));
    out.onNext(list.build());
    out.onCompleted();
  }

  @Override
  public void getActive(GetActiveRequest request, StreamObserver<AdapterVersionInfo> out) {
    out.onNext(info(controller.activeView()));
    out.onCompleted();
  }

  @Override
  public void activate(ActivateRequest request, StreamObserver<AdapterVersionInfo> out) {
    if (request.getVersionId().isEmpty()) {
      out.onError(Status.INVALID_ARGUMENT.withDescription("version_id: is required (\"base\" for the base model)")
          .asRuntimeException());
      return;
    }
    reply(controller.activate(request.getVersionId()), out);
  }

  @Override
  public void rollback(RollbackRequest request, StreamObserver<AdapterVersionInfo> out) {
    reply(controller.rollback(), out);
  }

  @Override
  public void pauseRollout(PauseRolloutRequest request, StreamObserver<RolloutState> out) {
    out.onNext(state(controller.pause()));
    out.onCompleted();
  }

  @Override
  public void resumeRollout(ResumeRolloutRequest request, StreamObserver<RolloutState> out) {
    out.onNext(state(controller.resume()));
    out.onCompleted();
  }

  private static void reply(CompletableFuture<VersionView> result, StreamObserver<AdapterVersionInfo> out) {
    result.whenComplete((view, error) -> {
      if (error != null) {
        out.onError(Errors.toStatus(error));
      } else {
        out.onNext(info(view));
        out.onCompleted();
      }
    });
  }

  static AdapterVersionInfo info(VersionView v) {
    var spec = v.spec();
    return AdapterVersionInfo.newBuilder()
        .setVersionId(spec.getVersionId())
        .setVersion(spec.getVersion())
        .setRunId(spec.getRunId())
        .setBaseModel(spec.getBaseModel())
        .setStatus(VersionStatus.valueOf(v.status().name()))
        .setFailureReason(v.failureReason())
        .setLoss(spec.getMetrics().getLoss())
        .setRewardAccuracy(spec.getMetrics().getRewardAccuracy())
        .setRewardMargin(spec.getMetrics().getRewardMargin())
        .setPublishedAtMs(spec.getCreatedAt().toEpochMilli())
        .setActivatedAtMs(v.activatedAtMs())
        .build();
  }

  static RolloutState state(AdapterRollout.State s) {
    return RolloutState.newBuilder()
        .setPaused(s.paused())
        .setActiveVersion(s.active())
        .setPinnedVersion(s.pinned().map(p -> p.isEmpty() ? AdapterRollout.BASE_REQUEST : p).orElse(""))
        .build();
  }
}
