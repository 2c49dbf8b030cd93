"""``./pipeline demo``: the whole online-learning loop on this machine.

It starts the embedded stack (Kafka + schema registry), the Streams app, two engine workers (HF backend, tiny
model), the inference service and the trainer (CPU), then a feedback simulator that uses the public gRPC API the
way an app would: ``Generate`` with n=2, then ``SubmitFeedback`` with a PAIRWISE choice made by a hidden preference
(:mod:`vllm_train.demo.preference`). A live view shows the loop learning; ``--minutes N --report DIR`` runs headless
and writes ``summary.json`` and ``score.png``.
"""
