"""Members trained as one: M trainers whose steps share every operator call (``model.stacked``).

Each member is a whole ``loop.Trainer`` with its own run folder, parts, optimizer and
checkpoints; the stack replaces only its step. One forward and backward runs for all
members (x (M, B, *x_shape), per-example terms (M, B)); each member then takes its own
optimizer step on its slice of the gradients (its fused Adam, whose parameters and
gradients are views of the stacked tensors), so member m's weights, optimizer state,
data order and noise are the ones it would have alone.

Nothing in a step waits for the host: whether a member's step was finite, its skip, its
counters and its running terms stay on the device (a member's non-finite step is skipped
by Adam's ``found_inf``, as ``GradScaler`` skips one), and the host reads them at the
member's duties (an epoch's end, ``train.checkpoint_every``) or every ``read_every`` steps.
So a member whose steps keep failing is rolled back at its next duty, not at its
``train.max_bad_steps``-th failure; a rolled-back member trains on behind the others, and
members that finished wait, masked, until the last one is done. ``train.ema`` reads each
member's flag every step (its average moves only after a step that was taken).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .. import checkpoint, optim
from ..errors import Interrupted
from ..model.stacked import Stacked
from ..objectives.module import call_kwargs
from .loop import Trainer
from .parts import Bar, Part, Tally


def dense(t: torch.Tensor, keep: int = 0) -> torch.Tensor:
    """``t`` with its dimensions (after the first ``keep``) in memory order: a contiguous view of a
    dense tensor, so that an elementwise kernel (fused Adam) walks it without a copy."""
    strides = t.stride()
    rest = sorted(range(keep, t.dim()), key=lambda d: -strides[d])
    return t.permute(*range(keep), *rest)


class Stack:
    """Steps ``trainers`` (built, each with its model, before any step) as one."""

    def __init__(self, trainers: list[Trainer], rng: list[tuple[torch.Tensor, ...]], read_every: int = 0):
        self.trainers, self.rng, self.read_every = trainers, rng, read_every
        t0 = trainers[0]
        self.device, self.n = t0.device, len(trainers)
        self.model = Stacked([t.model for t in trainers], self.draw)
        self.weights = self.model.stacked()
        self.params = [[dense(w.data[m]) for w in self.weights] for m in range(self.n)]  # member m's parameters: views
        self.steps = torch.zeros(self.n, len(self.weights), device=self.device)  # Adam's step counts, (M, P)
        self.moments: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self.step_views: dict[int, list[torch.Tensor]] = {}
        for m in range(self.n):
            self.adopt_optimizer(m)
        self.active = [True] * self.n
        self.active_mask = torch.ones(self.n, dtype=torch.bool, device=self.device)  # ``active`` on the device, remade when it changes
        self.streak = torch.zeros(self.n, dtype=torch.long, device=self.device)  # non-finite steps in a row
        self.skipped = torch.zeros_like(self.streak)  # skipped since the last read
        self.sums: dict[str, torch.Tensor] = {}  # running terms since the last read, (M,) each
        self.extra = [[p for p in t.parts if type(p).after_step is not Part.after_step and not isinstance(p, Tally)] for t in trainers]
        self.stop_signal: int | None = None
        self.since_read = 0

    # --- each member's noise ------------------------------------------------------------
    def generators(self) -> list[torch.Generator]:
        gens = [torch.random.default_generator]
        if self.device.type == "cuda":
            gens.append(torch.cuda.default_generators[self.device.index or 0])
        return gens

    @contextlib.contextmanager
    def member(self, m: int) -> Iterator[None]:
        """Member m's global generators: what it draws in here continues its own streams."""
        gens = self.generators()
        for g, s in zip(gens, self.rng[m]):
            g.set_state(s)
        try:
            yield
        finally:
            self.rng[m] = tuple(g.get_state() for g in gens)

    def draw(self, m: int, fn):
        """Member m's draw (``Stacked``'s noise); a finished member's is thrown away, its stream untouched."""
        if not self.active[m]:
            return fn()
        with self.member(m):
            return fn()

    # --- the step -----------------------------------------------------------------------
    def adopt_optimizer(self, m: int) -> None:
        """Member m's Adam state as the stack steps it: its moments (its own, made if the optimizer
        has not stepped yet) and its step counts as views of row m of ``steps``, so that one
        operation counts every member's step. Called again after its state was loaded."""
        t = self.trainers[m]
        (group,) = t.opt.param_groups
        for j, p in enumerate(group["params"]):
            state = t.opt.state[p]
            if not state:
                state.update(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p), step=torch.zeros((), device=p.device))
            for key in ("exp_avg", "exp_avg_sq"):  # a loaded state is contiguous; the kernel wants the parameter's layout
                if state[key].stride() != p.stride():
                    state[key] = torch.empty_like(p).copy_(state[key])
            self.steps[m, j] = state["step"]
            state["step"] = self.steps[m, j]
        self.moments[m] = tuple([dense(t.opt.state[p][key]) for p in group["params"]] for key in ("exp_avg", "exp_avg_sq"))  # type: ignore[assignment]
        self.step_views[m] = [self.steps[m, j] for j in range(len(group["params"]))]

    def adam(self, ok: torch.Tensor) -> None:
        """Every member's Adam step on its slice of the gradients (the fused kernel ``torch.optim.Adam``
        calls), at its own rate; a member whose step was not finite (``ok`` False) skips it entirely."""
        grads = [dense(g, 1).unbind(0) for g in self.grads()]
        self.steps.add_(ok.unsqueeze(1).to(self.steps.dtype))
        bad = (~ok).float()
        for m, t in enumerate(self.trainers):
            if not self.active[m]:
                continue
            group = t.opt.param_groups[0]
            (beta1, beta2), (avg, avg_sq) = group["betas"], self.moments[m]
            torch._fused_adam_(self.params[m], [g[m] for g in grads], avg, avg_sq, [], self.step_views[m], amsgrad=False, lr=group["lr"], beta1=beta1,
                               beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"], maximize=False, found_inf=bad[m])  # fmt: skip

    def grads(self) -> list[torch.Tensor]:
        """The stacked weights' gradients, (M, ...) each (every weight gets one: both networks run in every step)."""
        out = [w.grad for w in self.weights]
        assert all(g is not None for g in out)
        return out  # type: ignore[return-value]

    def batch(self) -> torch.Tensor:
        """The members' batches, (M, B, *x_shape): each from its own data order (zeros for a finished member)."""
        xs = [t.batches.next() if a else None for t, a in zip(self.trainers, self.active)]
        images = [x for x in xs if isinstance(x, torch.Tensor)]  # labelled batches do not stack (members.solo_reason)
        return torch.stack([x if isinstance(x, torch.Tensor) else torch.zeros_like(images[0]) for x in xs])

    def kwargs(self) -> dict:
        """The objective's keyword arguments: each member's schedule; a beta that differs becomes (M, 1)."""
        each = []
        for t in self.trainers:
            progress = optim.progress(t.step, t.total_steps, t.clock.seconds, t.clock.budget)
            each.append(call_kwargs(t.cfg.objective, t.step, None, progress))
        betas = [k["beta"] for k in each]
        out = dict(each[0])
        if any(b != betas[0] for b in betas):
            out["beta"] = torch.tensor(betas, device=self.device).unsqueeze(1)
        return out

    def train_step(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One step of every active member: ok (M,), on the device, whether each took it, and each
        member's batch-mean terms, (M,) each (``loss`` among them)."""
        x = self.batch()
        t0 = self.trainers[0]
        with t0.precision.autocast():
            bound, terms = t0.objective.fn(self.model, x, **self.kwargs())  # (M, B)
        loss = -bound.mean(-1)  # (M,): each member's own reduction over its batch
        for w in self.weights:
            w.grad = None
        loss.sum().backward()
        grads = self.grads()
        norms = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dim=tuple(range(1, g.dim()))) for g in grads]), dim=0)  # (M,)
        active = self.active_mask
        ok = torch.isfinite(loss.detach() + norms) & active
        clip = t0.cfg.train.clip_grad
        if clip:
            coef = (clip / (norms + 1e-6)).clamp(max=1.0)  # clip_grads_with_norm_'s coefficient, per member
            torch._foreach_mul_(grads, [coef.view(-1, *[1] * (g.dim() - 1)) for g in grads])
        self.adam(ok)
        out = {"loss": loss.detach(), **{k: v.detach().mean(-1) for k, v in terms.items()}}  # (M,) each
        zero = torch.zeros((), device=self.device)
        for key, value in {**out, "count": ok.float()}.items():
            self.sums[key] = self.sums.get(key, zero) + torch.where(ok, value, zero)
        if any(self.extra):
            taken = ok.tolist()
            for m, parts in enumerate(self.extra):
                for part in parts if taken[m] else []:
                    part.after_step({k: v[m] for k, v in out.items()})
        self.skipped += (~ok & active).long()
        self.streak = torch.where(active, torch.where(ok, 0, self.streak + 1), self.streak)
        return ok, out

    # --- the loop -----------------------------------------------------------------------
    def read(self) -> None:
        """Bring the device's counters and running terms to the members (one read)."""
        skipped, streak = self.skipped.tolist(), self.streak.tolist()
        sums = {k: v.detach().clone() for k, v in self.sums.items()}
        for m, t in enumerate(self.trainers):
            t.skipped_steps += skipped[m]
            t.bad_streak = streak[m]
            if sums and sums["count"][m] > 0:
                for key, value in sums.items():
                    t.tally.sums[key] = t.tally.sums.get(key, 0.0) + value[m]
        self.skipped.zero_()
        self.sums, self.since_read = {}, 0

    def adopt(self, m: int) -> None:
        """After member m's duties (its state may have moved back: a rollback): its counters and
        its optimizer's state, which loading replaced, follow."""
        self.streak[m] = self.trainers[m].bad_streak
        self.adopt_optimizer(m)

    def advance(self) -> None:
        """One step of the active members, then each one's epoch-end, rollback and checkpoint duties."""
        self.train_step()
        due = []
        for m, t in enumerate(self.trainers):
            if not self.active[m]:
                continue
            t.step += 1
            t.model.on_step(t.step)
            t.apply_lr()
            every = t.cfg.train.checkpoint_every
            if t.batches.epoch_done() or every and t.step % every == 0:
                due.append(m)
        self.since_read += 1
        if due or self.read_every and self.since_read >= self.read_every:
            self.read()
        for m in due:
            self.duties(m)

    def duties(self, m: int) -> None:
        """Member m's epoch end, rollback and checkpoint, as ``Trainer.advance`` does them (its counters read)."""
        t = self.trainers[m]
        with self.member(m):
            if t.batches.epoch_done():
                t.end_epoch()
            if t.bad_streak >= t.cfg.train.max_bad_steps:
                t.rollback()
            else:
                every = t.cfg.train.checkpoint_every
                if every and t.step % every == 0 and t.saved_step != t.step:
                    t.checkpoint()
        self.adopt(m)

    def running(self) -> bool:
        """Whether any member takes another step; checkpoints every member and stops after a signal."""
        if self.stop_signal is not None:
            self.read()
            for m, t in enumerate(self.trainers):
                with self.member(m):
                    t.checkpoint()
            raise Interrupted(self.trainers[0].run_dir.parent, self.trainers[0].step, self.stop_signal)
        for m, t in enumerate(self.trainers):
            t.clock.agree(False)
            if t.clock.budget:
                t.apply_lr()
            with self.member(m):
                for part in t.parts:
                    part.before_step()
            going = self.active[m] and t.batches.epoch < t.cfg.train.epochs and not t.clock.out_of_time()
            if going != self.active[m]:
                self.active[m] = going
                self.active_mask = torch.tensor(self.active, device=self.device)
        return any(self.active)

    def fit(self, progress: bool = True) -> None:
        """Train every member to its epochs (or budget), then close each as ``Trainer.fit`` does."""
        for m, t in enumerate(self.trainers):
            if not checkpoint.list_checkpoints(t.run_dir):
                with self.member(m):
                    t.checkpoint()  # step 0: a point to roll back to
            t.model.train()
        with Bar(self.trainers[0], progress) as bar:
            while self.running():
                self.advance()
                bar.update()
        self.read()
        for m, t in enumerate(self.trainers):
            with self.member(m):
                t.close()
                for part in t.parts:
                    part.at_end()
            t.model.eval()
