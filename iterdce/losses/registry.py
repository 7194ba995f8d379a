"""The loss-term registry: every term of the synthesis loss is one ``register_loss_term`` entry, here or in a
module of the user's (documentation/architecture.md, "Adding a loss term").

A term is a name, a default weight, a function of the ``LossInputs`` and the optional inputs it needs. The
registration order is the order in which the terms are evaluated and summed. A plan's ``loss_weights`` may leave
out any term (it then gets its default weight); a name that is not registered is refused, by name, in
``loss_weight_problems``, the one check of loss weights (the plan schema and the loss both call it).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

from iterdce.core.extensions import EXTENSIONS_ENV, load_extensions

# the optional inputs a term may need; a term whose input is absent from a call is left out of that call's loss
Need = Literal["lesion", "med3d"]
NEEDS: tuple[Need, ...] = ("lesion", "med3d")


@dataclass(frozen=True)
class LossInputs:
    """What a term's function reads: float32 [B, C, X, Y, Z] prediction and target (autocast off).

    ``mask`` (pred's shape, 1 = counts) already includes ``sample_weights``; ``lesion`` marks lesion voxels
    (broadcastable to pred, also weighted); ``sample_weights`` [B] (0 or 1) say whether a sample counts;
    ``data_range`` is the intensity range of the plan; ``med3d`` the frozen Med3D feature extractor (a callable
    from a volume to its list of feature maps).
    """

    pred: Tensor
    target: Tensor
    mask: Tensor | None
    lesion: Tensor | None
    sample_weights: Tensor | None
    data_range: float
    med3d: Callable[[Tensor], list[Tensor]] | None


@dataclass(frozen=True)
class LossTerm:
    """One registered term: ``compute(inputs)`` is its unweighted value (a scalar tensor).

    The term is evaluated when its weight is > 0 (or always, with ``evaluated_at_weight_0``: the paper's image
    terms are logged even when off) and every input in ``needs`` is there.
    """

    name: str
    default_weight: float
    compute: Callable[[LossInputs], Tensor]
    needs: tuple[Need, ...] = ()
    evaluated_at_weight_0: bool = False


_TERMS: dict[str, LossTerm] = {}


def register_loss_term(name: str, default_weight: float, needs: tuple[Need, ...] = (),
                       evaluated_at_weight_0: bool = False
                       ) -> Callable[[Callable[[LossInputs], Tensor]], Callable[[LossInputs], Tensor]]:
    """Decorator: register the decorated ``f(inputs: LossInputs) -> Tensor`` as the loss term ``name``.

    The single way to add a term; it then takes part in every loss whose plan does not set its weight to 0, and
    the planner writes ``default_weight`` into new plans. A second term of the same name is refused.
    """
    if not name.isidentifier():
        raise ValueError(f"a loss term's name must be an identifier, got {name!r}")
    if not _valid_weight(default_weight):
        raise ValueError(f"loss term {name!r}: the default weight must be a non-negative number, got "
                         f"{default_weight!r}")
    unknown = [n for n in needs if n not in NEEDS]
    if unknown:
        raise ValueError(f"loss term {name!r}: unknown needs {unknown} (known: {', '.join(NEEDS)})")

    def register(compute: Callable[[LossInputs], Tensor]) -> Callable[[LossInputs], Tensor]:
        if name in _TERMS and _TERMS[name].compute is not compute:
            raise ValueError(f"a loss term called {name!r} is already registered")
        _TERMS[name] = LossTerm(name, float(default_weight), compute, tuple(needs), evaluated_at_weight_0)
        return compute

    return register


def loss_terms(with_extensions: bool = True) -> tuple[LossTerm, ...]:
    """Every registered term in evaluation order; the user's modules (ITERDCE_EXTENSIONS) are imported first unless
    ``with_extensions`` is False (then: the terms registered so far, e.g. the built-in ones at import time)."""
    if with_extensions:
        load_extensions()
    return tuple(_TERMS.values())


def default_loss_weights(with_extensions: bool = True) -> dict[str, float]:
    """Each registered term's default weight (what the planner writes into a new plan)."""
    return {term.name: term.default_weight for term in loss_terms(with_extensions)}


def loss_weight_problems(weights: Any) -> list[str]:
    """What is wrong with a ``loss_weights`` mapping (any subset of the terms): unknown names and weights that are
    not non-negative numbers, each named as ``loss_weights.<term>``; empty when it is fine."""
    if not isinstance(weights, Mapping):
        return [f"loss_weights must be a mapping of term names to weights, got {weights!r}"]
    known = [term.name for term in loss_terms()]
    found = [f"loss_weights.{k}: unknown loss term (known: {', '.join(known)}; a term of your own is added with "
             f"register_loss_term in a module named in {EXTENSIONS_ENV})" for k in weights if k not in known]
    found += [f"loss_weights.{k} must be a non-negative number, got {w!r}"
              for k, w in weights.items() if k in known and not _valid_weight(w)]
    return found


def with_default_weights(weights: Mapping[str, Any]) -> dict[str, Any]:
    """``weights`` completed with the default of every term it leaves out, in evaluation order (names that are not
    registered kept at the end, for ``loss_weight_problems`` to name)."""
    defaults = default_loss_weights()
    return {**{k: weights.get(k, w) for k, w in defaults.items()}, **weights}


def resolve_loss_weights(weights: Mapping[str, Any]) -> dict[str, float]:
    """Every term's weight as a float (defaults filled in); ValueError listing each problem."""
    problems = loss_weight_problems(weights)
    if problems:
        raise ValueError("; ".join(problems))
    return {k: float(w) for k, w in with_default_weights(weights).items()}


def _valid_weight(weight: Any) -> bool:
    return (not isinstance(weight, bool) and isinstance(weight, (int, float)) and math.isfinite(weight)
            and weight >= 0)
