"""An Ecole-shaped branching environment on PySCIPOpt, and policies as SCIP branching rules.

`Branching(observation_function, reward_function, information_function, scip_params,
pseudo_candidates)`:

- ``reset(instance) -> (observation, action_set, reward_offset, done, info)``;
- ``step(action) -> (observation, action_set, reward, done, info)``.

``instance`` is a file path (read with `milp.instances.read_instance`) or a PySCIPOpt model
in stage PROBLEM, which the environment then solves and owns. ``action_set`` holds the LP
branching candidates as prob-indices (the variable rows of the observations, see
`milp.observations`), or with ``pseudo_candidates=True`` (Ecole's option) the pseudo
branching candidates, every unfixed integer variable, still decided at LP branching calls
only; an action is one of them, or `DEFAULT` (also the string ``"default"``),
which hands the node to SCIP's next branching rule (our rule returns DIDNOTRUN: PySCIPOpt 6
cannot call SCIP's rules from inside a custom one). An action outside ``action_set`` is a
ValueError and leaves the episode where it was.

How it runs: SCIP solves in-process, in one solver thread per episode, and our `Branchrule`
(top priority) is SCIP's callback. At each LP branching call the callback extracts the
observation, reward and information *in the solver thread*, hands them to `reset`/`step`, and
blocks until the next action arrives; no solver work is repeated. Observation, reward and
information functions follow Ecole's protocol (``before_reset(model)``, ``extract(model,
done)``) and may be given as a dict or tuple of functions, extracted element-wise; the
terminal observation is None (observation functions are not called there, as in Ecole). An
exception inside a function ends the episode: `step` re-raises it and the next call must be
`reset`.

``scip_params`` is a `milp.scip_settings.SolverSettings` or a dict of SCIP parameters; the
default is ``SolverSettings(time_limit=None)`` with presolve, heuristics and root cuts on.

`include_policy(model, policy, observation_function)` plugs a policy straight into SCIP as a
branching rule (no thread), for evaluation: ``policy(observation, action_set)`` returns a
prob-index from ``action_set`` or `DEFAULT`; solve with `optimize(model, rule)` so that a
failing policy raises its own error.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyscipopt as scip

from milp.instances import InstanceError, read_instance
from milp.observations import NodeBipartite, branching_candidates
from milp.rewards import IsDone, RewardFunction
from milp.scip_settings import MAX_SEED, TOP_PRIORITY, SolverSettings, seed_params, set_param

__all__ = [
    "DEFAULT",
    "Branching",
    "Default",
    "LPBranchrule",
    "PolicyBranchrule",
    "include_policy",
    "optimize",
]


class Default:
    """The action that lets SCIP's own rule branch."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = Default()


def _is_default(action: Any) -> bool:
    return isinstance(action, Default) or (isinstance(action, str) and action == "default")


class _Composite:
    """Element-wise extraction over a dict or tuple of functions; None gives None."""

    def __init__(self, fns: Any) -> None:
        self.fns = fns

    def _each(self) -> list:
        if self.fns is None:
            return []
        if isinstance(self.fns, dict):
            return list(self.fns.values())
        if isinstance(self.fns, tuple | list):
            return list(self.fns)
        return [self.fns]

    def before_reset(self, model: scip.Model) -> None:
        for fn in self._each():
            fn.before_reset(model)

    def extract(self, model: scip.Model, done: bool) -> Any:
        if self.fns is None:
            return None
        # One memo for the whole call: a reward met in two entries ({"n": r, "cost": -r})
        # is read once, as within one expression (a second read of a counter gives 0).
        memo: dict[int, float] = {}

        def one(fn: Any) -> Any:
            if isinstance(fn, RewardFunction):
                return fn._extract_once(model, done, memo)
            return fn.extract(model, done)

        if isinstance(self.fns, dict):
            return {k: one(fn) for k, fn in self.fns.items()}
        if isinstance(self.fns, tuple | list):
            return tuple(one(fn) for fn in self.fns)
        return one(self.fns)


class _EmptyInformation:
    def before_reset(self, model: scip.Model) -> None:
        pass

    def extract(self, model: scip.Model, done: bool) -> dict:
        return {}


class LPBranchrule(scip.Branchrule):
    """A branching rule that decides at LP branchings only (``branchexeclp``, the subclass's):
    a node whose LP was not solved (branching on a pseudo-solution) or external candidates go
    to SCIP's other rules, as Ecole's environments do. PySCIPOpt's base class raises there,
    which fails the solve ("SCIP: unspecified error")."""

    def branchexecps(self, allowaddcons: bool) -> dict:
        return {"result": scip.SCIP_RESULT.DIDNOTRUN}

    def branchexecext(self, allowaddcons: bool) -> dict:
        return {"result": scip.SCIP_RESULT.DIDNOTRUN}


class _AgentBranchrule(LPBranchrule):
    """Hands every LP branching decision to the environment's caller."""

    def __init__(self, episode: _Episode) -> None:
        self.episode = episode

    def branchexeclp(self, allowaddcons: bool) -> dict:
        return self.episode.decide(self.model)


class _Episode:
    """One solve in its own thread, exchanging messages with `Branching`."""

    def __init__(self, model: scip.Model, obs, reward, info, pseudo: bool = False) -> None:
        self.model = model
        self.pseudo = pseudo
        self.obs, self.reward, self.info = obs, reward, info
        self.to_agent: queue.Queue = queue.Queue()
        self.to_solver: queue.Queue = queue.Queue()
        self.stopping = False
        self.cands: dict[int, Any] = {}
        self.rule = _AgentBranchrule(self)
        model.includeBranchrule(
            self.rule,
            "sparserl-agent",
            "branching decisions taken by the environment's caller",
            TOP_PRIORITY,
            -1,
            1.0,
        )
        self.thread = threading.Thread(target=self._run, name="scip-episode", daemon=True)
        self.thread.start()

    def _extract(self, done: bool) -> tuple:
        m = self.model
        reward = self.reward.extract(m, done)
        # As in Ecole, the terminal state has no observation (None) and the observation
        # functions are not called there: many read the node, which no longer exists.
        obs = None if done else self.obs.extract(m, done)
        return obs, reward, self.info.extract(m, done)

    def _run(self) -> None:
        try:
            for fn in (self.obs, self.reward, self.info):
                fn.before_reset(self.model)
            self.model.optimize()
            if self.stopping:
                return
            obs, reward, info = self._extract(True)
            self.to_agent.put(("done", obs, np.empty(0, dtype=np.int64), reward, info))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.to_agent.put(("error", exc))
        finally:
            # The rule and the model hold each other (see `milp.instances.release`).
            self.rule.model = self.rule.episode = None

    def decide(self, model: scip.Model) -> dict:
        if self.stopping:
            return {"result": scip.SCIP_RESULT.DIDNOTRUN}
        try:
            idx, cands = branching_candidates(model, self.pseudo)
            self.cands = dict(zip(idx.tolist(), cands, strict=True))
            obs, reward, info = self._extract(False)
        except BaseException as exc:  # noqa: BLE001
            self.stopping = True
            model.interruptSolve()
            self.to_agent.put(("error", exc))
            return {"result": scip.SCIP_RESULT.DIDNOTRUN}
        self.to_agent.put(("branch", obs, idx, reward, info))
        action = self.to_solver.get()
        if action is None:
            self.stopping = True
            model.interruptSolve()
            return {"result": scip.SCIP_RESULT.DIDNOTRUN}
        if _is_default(action):
            return {"result": scip.SCIP_RESULT.DIDNOTRUN}
        model.branchVar(self.cands[action])
        return {"result": scip.SCIP_RESULT.BRANCHED}

    def receive(self) -> tuple:
        msg = self.to_agent.get()
        if msg[0] == "error":
            self.thread.join()
            raise RuntimeError(f"episode failed: {type(msg[1]).__name__}: {msg[1]}") from msg[1]
        return msg

    def stop(self) -> None:
        if self.thread.is_alive():
            self.to_solver.put(None)
            self.thread.join()


class Branching:
    """Branching environment (see the module docstring)."""

    def __init__(
        self,
        observation_function: Any = "default",
        reward_function: Any = None,
        information_function: Any = None,
        scip_params: SolverSettings | dict | None = None,
        pseudo_candidates: bool = False,
    ) -> None:
        obs = NodeBipartite() if observation_function == "default" else observation_function
        self.observation_function = _Composite(obs)
        self.reward_function = _Composite(IsDone() if reward_function is None else reward_function)
        self.information_function = _Composite(
            _EmptyInformation() if information_function is None else information_function
        )
        self.scip_params = SolverSettings(time_limit=None) if scip_params is None else scip_params
        self.pseudo_candidates = bool(pseudo_candidates)
        self._seed: int | None = None
        self._episode: _Episode | None = None
        self._action_set: np.ndarray | None = None
        self.model: scip.Model | None = None

    def seed(self, seed: int) -> None:
        """SCIP's random seeds for the following episodes (overrides the settings' seed)."""
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be in [0, {MAX_SEED}] (SCIP's seeds), got {seed}")
        self._seed = int(seed)

    def _configure(self, model: scip.Model) -> None:
        if isinstance(self.scip_params, SolverSettings):
            settings = self.scip_params
            if self._seed is not None:
                settings = SolverSettings(**{**settings.as_dict(), "seed": self._seed})
            settings.apply(model)
        else:
            for name, value in self.scip_params.items():
                set_param(model, name, value)
            if self._seed is not None:
                for name, value in seed_params(self._seed).items():
                    model.setParam(name, value)

    def reset(self, instance: str | Path | scip.Model) -> tuple:
        """Start an episode; returns (observation, action_set, reward_offset, done, info)."""
        self.close()
        if isinstance(instance, scip.Model):
            if instance.getStage() != scip.SCIP_STAGE.PROBLEM:
                raise InstanceError("reset needs a model in stage PROBLEM (not yet solved)")
            model = instance
            model.hideOutput()
        else:
            model = read_instance(instance)
        self._configure(model)
        self.model = model
        self._episode = _Episode(
            model,
            self.observation_function,
            self.reward_function,
            self.information_function,
            self.pseudo_candidates,
        )
        return self._receive()

    def _receive(self) -> tuple:
        try:
            kind, obs, action_set, reward, info = self._episode.receive()
        except RuntimeError:
            self._episode = None
            raise
        done = kind == "done"
        if done:
            self._episode.thread.join()
            self._episode = None
        self._action_set = None if done else action_set
        return obs, action_set, reward, done, info

    def step(self, action: int | Default | str) -> tuple:
        """Branch on ``action``; returns (observation, action_set, reward, done, info)."""
        if self._episode is None:
            raise RuntimeError("step needs a running episode: call reset(instance) first")
        if not _is_default(action):
            if isinstance(action, bool) or not isinstance(action, int | np.integer):
                raise ValueError(f"action must be a prob-index or DEFAULT, got {action!r}")
            action = int(action)
            if action not in self._episode.cands:
                kind = "pseudo" if self.pseudo_candidates else "LP"
                raise ValueError(
                    f"action {action} is not in the action set ({len(self._action_set)} "
                    f"{kind} branching candidates)"
                )
        self._episode.to_solver.put(action)
        return self._receive()

    def close(self) -> None:
        """Stop a running episode (SCIP is interrupted) and free its model."""
        if self._episode is not None:
            self._episode.stop()
            self._episode = None
        self._action_set = None

    def __del__(self) -> None:
        self.close()


class PolicyBranchrule(LPBranchrule):
    """A policy as a SCIP branching rule: ``policy(observation, action_set) -> action``.

    An exception inside the rule (the policy's, the observation's, a bad action) makes SCIP's
    solve fail with its own "unspecified error"; ``error`` keeps the original, which
    `optimize` raises instead."""

    def __init__(
        self,
        policy: Callable[[Any, np.ndarray], Any],
        observation_function,
        pseudo_candidates: bool = False,
    ) -> None:
        self.policy = policy
        self.pseudo_candidates = pseudo_candidates
        self.observation_function = observation_function
        self.decisions = 0
        self.error: BaseException | None = None

    def branchexeclp(self, allowaddcons: bool) -> dict:
        try:
            return self._branch()
        except BaseException as exc:
            self.error = exc
            raise

    def _branch(self) -> dict:
        idx, cands = branching_candidates(self.model, self.pseudo_candidates)
        obs = self.observation_function.extract(self.model, False)
        action = self.policy(obs, idx)
        self.decisions += 1
        if _is_default(action):
            return {"result": scip.SCIP_RESULT.DIDNOTRUN}
        where = np.flatnonzero(idx == int(action))
        if where.size == 0:
            kind = "a pseudo" if self.pseudo_candidates else "an LP"
            raise ValueError(f"policy chose {action}, which is not {kind} branching candidate")
        self.model.branchVar(cands[int(where[0])])
        return {"result": scip.SCIP_RESULT.BRANCHED}


def include_policy(
    model: scip.Model,
    policy: Callable[[Any, np.ndarray], Any],
    observation_function: Any = None,
    pseudo_candidates: bool = False,
) -> PolicyBranchrule:
    """Make ``policy`` SCIP's first branching rule on ``model``; returns the rule (its
    ``decisions`` counts the calls). ``pseudo_candidates``: the action set holds every unfixed
    integer variable (as learn2branch's evaluation), not only the LP candidates."""
    obs = _Composite(NodeBipartite() if observation_function is None else observation_function)
    obs.before_reset(model)
    rule = PolicyBranchrule(policy, obs, pseudo_candidates)
    model.includeBranchrule(rule, "sparserl-policy", "a learned policy", TOP_PRIORITY, -1, 1.0)
    return rule


def optimize(model: scip.Model, rule: PolicyBranchrule) -> None:
    """``model.optimize()`` with ``rule`` (from `include_policy`) included; when the rule
    failed, its own exception is raised rather than SCIP's "unspecified error"."""
    try:
        model.optimize()
    except Exception:
        if rule.error is not None:
            raise rule.error from None
        raise
