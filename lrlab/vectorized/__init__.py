"""Training many runs of one architecture at once with torch.func.

- :mod:`lrlab.vectorized.plan`: which runs form a group, and each member's optimizer
  settings and learning rate per step;
- :mod:`lrlab.vectorized.stacked`: the members' parameters stacked ``(W, *shape)``,
  gradients through ``vmap(grad(...))`` over ``functional_call`` (traced with make_fx),
  batched clean evaluation;
- :mod:`lrlab.vectorized.graph`: tidying the traced step (no-op nodes out, bias additions
  fused into ``baddbmm``);
- :mod:`lrlab.vectorized.optim`: SGD, Adam, AdamW and RAdam batched over members;
- :mod:`lrlab.vectorized.trainer`: the training loop of a group, member by member the
  same as :func:`lrlab.engine.train`, and its checkpoints (one file per member, a group
  resumed in its saved layout).

The executors ``vectorized`` and ``auto`` (:mod:`lrlab.builtin.vectorized`) use them.
"""
