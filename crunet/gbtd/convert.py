"""Turning an unshared network into a CRU network: collective factorization of chosen stages (paper eq. 12).

For every sharing group of a chosen stage, the linear-view kernels of its units (each unit's first BN kept apart)
are factorized collectively; the new CRU stage gets the shared A3 (``reduce``) and G (``spatial``), and each unit
its own A4 as its last 1x1. What carries over unchanged: every other stage, the stem and the head; each unit's first
BN (as the CRU unit's ``norm1``, or for the first unit of a stage as ``proj_in_norm``); the projection shortcut
(as ``proj`` with ``proj_short_norm``); each unit's last 1x1 and the BN before it.

Where the factors go. The original unit is BN1-ReLU-1x1, BN2-ReLU-kxk, BN3-ReLU-1x1; a CRU unit is BN-ReLU, the
shared 1x1 and kxk back to back (a shared pair cannot have a BN between them), then BN-ReLU-1x1 (the extra 1x1),
BN-ReLU-1x1. What is factorized is each unit's kernel up to its BN3 (kxk, BN2's ReLU taken as the identity): its A4
becomes the extra 1x1, so that the ReLU after it is the original's third ReLU (BN3 folded in, its shift carried by the
last BN) and the original's last 1x1 is kept as it is. The ReLU between the core and the extra 1x1 has no counterpart:
with ``calibration`` images its BN is shifted so that every value it sees on them is positive (the ReLU is the
identity there), and the last BN takes the shift back. The converted unit then differs from the original only by the
factorization error and the original's middle ReLU (BN2's), which the CRU moves: it cannot be kept.

(Before, the whole unit's kernel, last 1x1 included, was factorized and A4 put in the last 1x1, behind two ReLUs that
cut every negative value of the core: the network started at chance, 10.0 %.)

BNs normalize with batch statistics in training, so a BN that starts as an identity would not be one when fine-tuning
starts. ``calibration`` images fix that: every BN gets its input's statistics on them as running statistics and a
scale and shift that keep its eval-mode map, so that train mode on those images computes what eval mode computes.

The first unit of a stage reads ``in_chs`` channels while the shared A3 reads ``out_chs``: its kernel K is mapped
through the projection P (out_chs x in_chs) as K P^+, which P lifts back exactly when P has full column rank.

``factorize_into`` writes the factorization into a CRU network built elsewhere (``crunet train --init-from
--init-method cru``), whose shared stages may be wider than the original's bottleneck D: ``crunet_small`` is
``preresnext_small`` with conv3 and conv4 shared in groups of three at R = D' rank-1 terms, but D' = 80 and 160
where the ResNeXt has D = 64 and 128 (its width was solved to match the ResNeXt's parameter count: what sharing
saves is spent on wider bottlenecks). R = D' terms then fit each D-channel kernel (more terms than
``factorize_model``'s R = D, so a closer fit); the extra 1x1 writes A4 into its first D outputs, and the last 1x1
reads the D' - D others with zero weights. A CRU stage narrower than the original's (D' < D) cannot hold A4's D
outputs before the ReLU that plays the original's third, and is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from crunet.errors import ConfigError
from crunet.gbtd.affine import bn_affine, conv1x1_matrix, set_identity_bn
from crunet.gbtd.collective import CollectiveFactors, collective_factorize
from crunet.gbtd.factors import factors
from crunet.gbtd.terms import a3_to_conv, a4_to_matrix, core_to_conv
from crunet.layers import ResidualUnit
from crunet.layers.complexity import count_parameters
from crunet.models.design import NetCfg, StageCfg
from crunet.models.preact_resnet import PreActResNet


@dataclass(frozen=True)
class GroupResult:
    stage: str  # "conv4"
    units: tuple[int, ...]  # unit indices within the stage
    factors: CollectiveFactors

    @property
    def errors(self) -> Tensor:
        """Final relative reconstruction error of each unit's kernel."""
        return self.factors.errors[-1]


@dataclass(frozen=True)
class FactorizeReport:
    params_before: int
    params_after: int
    groups: tuple[GroupResult, ...]


def stage_names(model: PreActResNet) -> list[str]:
    """``conv2``, ``conv3``, ... for the stages in order (the paper's names: conv1 is the stem)."""
    return [f"conv{i + 2}" for i in range(len(model.stages))]


def stage_index(model: PreActResNet, name: str | int) -> int:
    names = stage_names(model)
    if isinstance(name, int) and 0 <= name < len(names):
        return name
    if name in names:
        return names.index(name)
    if isinstance(name, str) and name.startswith("stages.") and name[7:].isdigit() and int(name[7:]) < len(names):
        return int(name[7:])
    raise ConfigError(f"{getattr(model, 'name', 'the model')} has no stage {name!r}; its stages: {', '.join(names)}")


def cru_design(cfg: NetCfg, stages: Sequence[int], groups: int | None = None, share_every: int | None = None) -> NetCfg:
    """``cfg`` with ``stages`` turned into CRU stages of the same widths: ``groups`` terms (None: one per channel, as
    CRU-Net), sharing in groups of ``share_every`` units (None: the whole stage)."""
    new = list(cfg.stages)
    for i in stages:
        s = cfg.stages[i]
        if s.shared:
            raise ConfigError(f"stage conv{i + 2} already shares its factors: factorize an unshared stage")
        new[i] = StageCfg(s.depth, s.out_chs, s.width, groups, s.stride, share_every or s.depth, extra_1x1=True)
    return dataclasses.replace(cfg, stages=tuple(new))


def factorize_model(model: PreActResNet, stages: Sequence[str | int], groups: int | None = None,
                    share_every: int | None = None, max_iter: int = 100,
                    restarts: int = 0, calibration: Tensor | None = None,
                    weight_by_inputs: bool = False) -> tuple[PreActResNet, FactorizeReport]:
    """A CRU model initialized from the collective factorization of ``model``'s ``stages`` (model is unchanged);
    with ``calibration`` images, its BNs are calibrated on them (see the module's docstring). ``weight_by_inputs``
    (with ``calibration``): each group's kernels are factorized whitened by the covariance of the channels their
    shared 1x1 reads on those images (pooled over the group), so the error minimized is the output's, not the
    weights' (as ``crunet.gbtd.dsfb_convert`` does for DSFB); the errors reported are then in that metric."""
    if not isinstance(model, PreActResNet):
        raise ConfigError(f"{getattr(model, 'name', type(model).__name__)} is not a pre-activation network "
                          "(PreActResNet, such as preresnext_small or preresnext50_32x4d): only their units have the "
                          "CRU form; a BasicBlock ResNet converts into its DSFB design (crunet compress --to)")
    indices = sorted({stage_index(model, s) for s in stages})
    if not indices:
        raise ConfigError("name at least one stage to factorize")
    cfg = cru_design(model.cfg, indices, groups, share_every)
    new = PreActResNet(cfg, model.num_classes, model.in_chans, f"{model.name}_cru", dict(model.pretrained_cfg))
    new = new.to(dtype=next(model.parameters()).dtype)
    return new, factorize_into(model, new, max_iter, restarts, calibration, weight_by_inputs)


def factorize_into(model: PreActResNet, target: PreActResNet, max_iter: int = 100, restarts: int = 0,
                   calibration: Tensor | None = None, weight_by_inputs: bool = False) -> FactorizeReport:
    """Write into ``target`` the collective factorization of ``model``'s stages that ``target`` shares, as
    ``factorize_model`` does. ``target`` is a CRU design of ``model`` (``check_cru_target``): its shared stages may
    be wider than ``model``'s (R terms for a bottleneck of D <= R channels: the extra 1x1's outputs beyond D keep
    ``target``'s init and the last 1x1 reads them with zero weights, so they start silent and can train)."""
    indices = check_cru_target(model, target)
    model, target = model.eval(), target.eval()
    _copy_unchanged(model, target, indices)
    results = []
    inputs = _reduce_input_covariances(model, indices, calibration) if weight_by_inputs and calibration is not None \
        else {}
    for i in indices:
        results.extend(_factorize_stage(model.stages[i], target.stages[i], stage_names(model)[i], max_iter, restarts,
                                        inputs))
    if calibration is not None:
        _shift_into_positive(target, indices, calibration)
        calibrate_norms(target, calibration)
    return FactorizeReport(count_parameters(model), count_parameters(target), tuple(results))


def check_cru_target(model: torch.nn.Module, target: torch.nn.Module) -> list[int]:
    """The indices of the stages ``target`` factorizes; a ConfigError unless ``target`` is a CRU design of the
    unshared ``model``: the same stem and stages, where each stage it shares (with an extra 1x1) is unshared in
    ``model`` and at least as wide, and each other stage is ``model``'s."""
    a, b = getattr(model, "cfg", None), getattr(target, "cfg", None)
    problem = _cru_mismatch(a, b) if isinstance(model, PreActResNet) and isinstance(target, PreActResNet) else \
        "both must be pre-activation networks, PreActResNet"
    if problem:
        raise ConfigError(f"{getattr(target, 'name', 'the target')} is not a CRU design of "
                          f"{getattr(model, 'name', 'the source')} ({problem}): convert a trained pre-activation "
                          "ResNeXt into a CRU-Net of its stem, depths and shortcut widths whose shared stages are at "
                          "least as wide (preresnext_small -> crunet_small)")
    return [i for i, s in enumerate(b.stages) if s != a.stages[i]]


def _cru_mismatch(a: NetCfg, b: NetCfg) -> str:
    """What keeps ``b`` from being a CRU design of ``a``; empty if nothing."""
    if (a.stem, a.stem_chs, len(a.stages)) != (b.stem, b.stem_chs, len(b.stages)):
        return "another stem or number of stages"
    changed = 0
    for i, (s, t) in enumerate(zip(a.stages, b.stages, strict=True)):
        if s == t:
            continue
        name = f"conv{i + 2}"
        if (s.depth, s.out_chs, s.stride) != (t.depth, t.out_chs, t.stride):
            return f"stage {name} has another depth, shortcut width or stride"
        if s.shared or not t.shared or not t.extra_1x1:
            return f"stage {name} differs without turning an unshared stage into a CRU stage with an extra 1x1"
        if t.width < s.width:
            return f"stage {name}'s bottleneck width {t.width} is below the source's {s.width}"
        changed += 1
    return "" if changed else "it shares no stage the source does not"


def calibrate_norms(model: torch.nn.Module, images: Tensor) -> None:
    """Every BN of ``model`` keeps its eval-mode map y = a x + c but takes its input's mean and (biased) variance on
    ``images`` as running statistics: weight a sqrt(var + eps), bias a mean + c. One eval pass sees every input,
    since the eval-mode function does not change."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    inputs: dict[torch.nn.Module, Tensor] = {}
    hooks = [bn.register_forward_hook(lambda m, args, out: inputs.__setitem__(m, args[0])) for bn in norms]
    try:
        with torch.no_grad():
            model.eval()(images.to(next(model.parameters()).dtype))
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        for bn in norms:
            x = inputs[bn].transpose(0, 1).flatten(1)
            mean, var = x.mean(1), x.var(1, unbiased=False)
            scale, shift = bn_affine(bn)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.weight.copy_(scale * torch.sqrt(var + bn.eps))
            bn.bias.copy_(scale * mean + shift)


def _copy_unchanged(old: PreActResNet, new: PreActResNet, indices: Sequence[int]) -> None:
    prefixes = tuple(f"stages.{i}." for i in indices)
    kept = {k: v for k, v in old.state_dict().items() if not k.startswith(prefixes)}
    missing, unexpected = new.load_state_dict(kept, strict=False)
    left = [k for k in missing if not k.startswith(prefixes)]
    if left or unexpected:
        raise ValueError(f"cannot carry the unfactorized layers over: missing {left[:3]}, unexpected {unexpected[:3]}")


def _factorize_stage(old_stage, new_stage, name: str, max_iter: int, restarts: int,
                     inputs: dict | None = None) -> list[GroupResult]:
    results = []
    for shared in new_stage.factors:
        members = [i for i, u in enumerate(new_stage.units) if u.factors is shared]
        kernels = [_unit_kernel(old_stage.units[i]) for i in members]
        stacked, unwhiten = torch.stack([k for k, _ in kernels]), None
        measured = [inputs[old_stage.units[i]] for i in members if old_stage.units[i] in (inputs or {})]
        if measured:
            from crunet.gbtd.dsfb_convert import covariance_root

            root = covariance_root(sum(measured) / len(measured))
            stacked, unwhiten = torch.einsum("loiab,ic->locab", stacked, root), torch.linalg.inv(root)
        cf = collective_factorize(stacked, shared.groups, shared.width // shared.groups, max_iter=max_iter,
                                  restarts=restarts)
        a3 = cf.a3 if unwhiten is None else torch.einsum("ci,rip->rcp", unwhiten, cf.a3)  # K(x) = K_white(L^-1 x)
        dtype = shared.reduce.dtype
        with torch.no_grad():
            shared.reduce.copy_(a3_to_conv(a3).to(dtype))
            shared.spatial.copy_(core_to_conv(cf.core).to(dtype))
            for j, i in enumerate(members):
                _init_unit(old_stage.units[i], new_stage.units[i], a4_to_matrix(cf.a4[j]), kernels[j][1])
        results.append(GroupResult(name, tuple(members), cf))
    return results


def _reduce_input_covariances(model: PreActResNet, indices: Sequence[int], images: Tensor) -> dict:
    """Per unit without a projection: E[v v^T] of the channels its first 1x1 reads (after BN1-ReLU) on ``images``;
    the CRU's shared 1x1 reads the same. Units with a projection read theirs through it and keep the plain metric."""
    units = [u for i in indices for u in model.stages[i].units if u.shortcut is None]
    outputs = {u: _output_of(model, u.conv1.norm, images.to(next(model.parameters()).dtype)) for u in units}
    return {u: (v := x.transpose(0, 1).flatten(1).double()) @ v.T / v.shape[1] for u, x in outputs.items()}


def _unit_kernel(unit: ResidualUnit) -> tuple[Tensor, Tensor]:
    """The kernel (width, out_chs, k, k) and bias of ``unit`` up to its third BN (the input of its third ReLU), which
    a CRU unit's shared part and extra 1x1 must reproduce."""
    if unit.factors is not None:
        raise ConfigError("factorize an unshared stage: this unit already uses shared factors")
    gbtd = factors(unit, keep_input_norm=True)
    scale, shift = bn_affine(unit.conv3.norm.bn)
    groups, width = unit.groups, unit.width
    to_bn3 = torch.diag(scale).reshape(width, groups, width // groups).permute(1, 0, 2)  # A4 = BN3's scale
    weight, bias = dataclasses.replace(gbtd, a4=to_bn3, bias4=shift).kernel(include_input_map=False)
    weight, bias = weight.to(torch.float64), bias.to(torch.float64)
    if unit.shortcut is not None:  # the projection P becomes the CRU's proj: read the kernel through P^+
        pinv = torch.linalg.pinv(conv1x1_matrix(unit.shortcut.conv.weight).to(torch.float64))
        weight = torch.einsum("oiab,ic->ocab", weight, pinv)
    return weight, bias


def _init_unit(old: ResidualUnit, new: ResidualUnit, a4: Tensor, bias: Tensor) -> None:
    dtype = new.conv3.conv.weight.dtype
    if new.proj is not None:
        new.proj.copy_(old.shortcut.conv.weight)
        new.proj_short_norm.bn.load_state_dict(old.shortcut.norm.bn.state_dict())
        new.proj_in_norm.bn.load_state_dict(old.conv1.norm.bn.state_dict())
        set_identity_bn(new.norm1.bn)
    else:
        new.norm1.bn.load_state_dict(old.conv1.norm.bn.state_dict())
    d = a4.shape[0]  # the original's bottleneck width: a wider CRU's channels beyond it start silent
    set_identity_bn(new.conv_mix.norm.bn)
    new.conv_mix.conv.weight[:d] = a4[:, :, None, None].to(dtype)
    set_identity_bn(new.conv3.norm.bn)
    new.conv3.norm.bn.bias[:d] = bias.to(dtype)
    new.conv3.conv.weight.zero_()
    new.conv3.conv.weight[:, :d] = old.conv3.conv.weight


SHIFT_MARGIN = 0.5  # of a channel's spread on the calibration images, added below its lowest value: headroom for
# other images and for the batch statistics of train mode


def _shift_into_positive(model: PreActResNet, indices: Sequence[int], images: Tensor) -> None:
    """Shift each converted unit's BN before its extra 1x1 so that every value it passes on ``images`` is positive
    (its ReLU the identity there), the last BN taking the shift back: the eval function is the factorization's.
    Units are shifted in order, each measured with the earlier ones already shifted."""
    dtype = next(model.parameters()).dtype
    for i in indices:
        for unit in model.stages[i].units:
            bn = unit.conv_mix.norm.bn
            x = _output_of(model, bn, images.to(dtype)).transpose(0, 1).flatten(1)  # its ReLU's input, per channel
            shift = (SHIFT_MARGIN * x.std(1) - x.min(1).values).clamp_min(0)
            with torch.no_grad():
                bn.bias.add_(shift)
                mix = conv1x1_matrix(unit.conv_mix.conv.weight) @ shift
                last_scale, _ = bn_affine(unit.conv3.norm.bn)
                unit.conv3.norm.bn.bias.sub_(last_scale * mix)


def _output_of(model: torch.nn.Module, module: torch.nn.Module, images: Tensor) -> Tensor:
    """What ``module`` outputs when ``model`` (eval mode) reads ``images``."""
    seen: list[Tensor] = []
    hook = module.register_forward_hook(lambda m, args, out: seen.append(out.clone()))  # before an in-place ReLU
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        hook.remove()
    return seen[0]
