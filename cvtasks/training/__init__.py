"""What keeps a training run alive and honest: atomic checkpoints, resume state, fault guards.

* :mod:`cvtasks.training.checkpoint_io`: Lightning ``CheckpointIO`` writing by temp file + rename
  and loading with ``weights_only=True``.
* :mod:`cvtasks.training.callbacks`: RNG state in checkpoints, non-finite loss guard, checkpoint on
  SIGTERM (preemption).
* :mod:`cvtasks.training.ema`: weight EMA (Lightning's ``EMAWeightAveraging``), validated, saved
  and resumed as the model.
* :mod:`cvtasks.training.progress`: the progress bar, reading metrics from the device only now and
  then.
* :mod:`cvtasks.training.resume`: ``ckpt_path=last`` / a path → the checkpoint and its run folder.
* :mod:`cvtasks.training.faults`: readable messages for out-of-memory and other run failures.
* :mod:`cvtasks.training.speed`: the speed switches (compile, channels-last, TF32, fused
  optimizers), resolved for the device a run executes on.
"""
