"""Rotated box geometry in the LiDAR frame: corners, rotated BEV and 3D IoU, rotated NMS, range filter.

Plain vectorised torch, so it runs on any device without custom kernels. Two rotated rectangles meet
in a convex polygon whose vertices are the corners of each box inside the other and the crossings of
their edges; sorting those points by angle about their mean and applying the shoelace formula gives
the intersection area (the method of OpenPCDet's ``iou3d_nms`` kernels, here batched over all pairs).
Geometry runs in float64, centred on one box of each pair, so touching, parallel and identical boxes
come out exact up to rounding.
"""

from __future__ import annotations

import torch

_UNIT_RECTANGLE = ((0.5, -0.5), (0.5, 0.5), (-0.5, 0.5), (-0.5, -0.5))
"""Corners of a unit box seen from above, counter-clockwise, front edge (+x) first."""

_TOLERANCE = 1e-9
"""Slack (m², or a fraction of an edge) for points on the other box's boundary: keeps them inside."""


def box_corners_bev(boxes: torch.Tensor) -> torch.Tensor:
    """Corners ``[M, 4, 2]`` (x, y) of ``boxes [M, 7]`` counter-clockwise, starting front-right:
    corners 0 → 1 form the front edge, the one the heading points through."""
    local = boxes.new_tensor(_UNIT_RECTANGLE) * boxes[:, None, 3:5]
    cos, sin = boxes[:, None, 6].cos(), boxes[:, None, 6].sin()
    x = local[..., 0] * cos - local[..., 1] * sin
    y = local[..., 0] * sin + local[..., 1] * cos
    return torch.stack((x, y), dim=-1) + boxes[:, None, :2]


def box_corners_3d(boxes: torch.Tensor) -> torch.Tensor:
    """Corners ``[M, 8, 3]`` of ``boxes [M, 7]``: the bottom face (counter-clockwise seen from
    above, front-right first), then the top face in the same order."""
    bev = box_corners_bev(boxes).repeat(1, 2, 1)
    half_height = boxes[:, 5:6] / 2
    z = torch.cat(
        (
            (boxes[:, 2:3] - half_height).expand(-1, 4),
            (boxes[:, 2:3] + half_height).expand(-1, 4),
        ),
        dim=1,
    )
    return torch.cat((bev, z[..., None]), dim=-1)


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """z component of the cross product of 2-D vectors ``[..., 2]`` → ``[...]``."""
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _inside(points: torch.Tensor, polygon: torch.Tensor) -> torch.Tensor:
    """Whether each of ``points [P, N, 2]`` lies in (or on) the convex counter-clockwise
    ``polygon [P, 4, 2]`` of its pair → bool ``[P, N]``."""
    edges = polygon.roll(-1, dims=1) - polygon
    offsets = points[:, :, None] - polygon[:, None]
    return (_cross(edges[:, None], offsets) >= -_TOLERANCE).all(dim=-1)


def _edge_crossings(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Crossings of every edge of ``a [P, 4, 2]`` with every edge of ``b [P, 4, 2]``: points
    ``[P, 16, 2]`` (0 where there is none) and whether each exists, bool ``[P, 16]``. Parallel
    edges never cross here; their shared stretch ends at corners that :func:`_inside` finds."""
    start_a, edge_a = a[:, :, None], (a.roll(-1, dims=1) - a)[:, :, None]
    start_b, edge_b = b[:, None], (b.roll(-1, dims=1) - b)[:, None]
    denominator = _cross(edge_a, edge_b)
    parallel = denominator.abs() <= _TOLERANCE
    denominator = torch.where(parallel, torch.ones_like(denominator), denominator)
    gap = start_b - start_a
    along_a, along_b = _cross(gap, edge_b) / denominator, _cross(gap, edge_a) / denominator
    on_both = ((along_a - 0.5).abs() <= 0.5 + _TOLERANCE) & (
        (along_b - 0.5).abs() <= 0.5 + _TOLERANCE
    )
    valid = ~parallel & on_both
    points = torch.where(valid[..., None], start_a + along_a[..., None] * edge_a, 0.0)
    return points.flatten(1, 2), valid.flatten(1, 2)


def _polygon_area(points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Area ``[P]`` of the convex polygon whose vertices are the ``valid [P, N]`` ones of
    ``points [P, N, 2]`` (any order, repeats allowed): shoelace after sorting them by angle."""
    count = valid.sum(dim=1, keepdim=True)
    centre = (points * valid[..., None]).sum(dim=1) / count.clamp(min=1)
    offsets = points - centre[:, None]
    angle = torch.atan2(offsets[..., 1], offsets[..., 0]).masked_fill(~valid, torch.inf)
    order = angle.argsort(dim=1)
    offsets = offsets.gather(1, order[..., None].expand_as(offsets))
    # invalid points (sorted last) repeat the first vertex: they close the ring and add no area
    offsets = torch.where(valid.gather(1, order)[..., None], offsets, offsets[:, :1])
    return 0.5 * _cross(offsets, offsets.roll(-1, dims=1)).sum(dim=1).clamp(min=0)


def intersection_area_bev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Area (m²) float64 ``[M, K]`` where ``a [M, 7]`` and ``b [K, 7]`` overlap seen from above.

    Only pairs whose circumscribed circles meet are clipped; the others are 0.
    """
    a, b = a.double(), b.double().to(a.device)
    radius_a, radius_b = a[:, 3:5].norm(dim=1) / 2, b[:, 3:5].norm(dim=1) / 2
    reach = torch.cdist(a[:, :2], b[:, :2]) <= radius_a[:, None] + radius_b[None]
    first, second = reach.nonzero(as_tuple=True)
    centre = a[first, None, :2]
    corners_a = box_corners_bev(a)[first] - centre
    corners_b = box_corners_bev(b)[second] - centre
    crossings, crossing = _edge_crossings(corners_a, corners_b)
    points = torch.cat((corners_a, corners_b, crossings), dim=1)
    valid = torch.cat((_inside(corners_a, corners_b), _inside(corners_b, corners_a), crossing), 1)
    area = a.new_zeros(len(a), len(b))
    area[first, second] = _polygon_area(points, valid)
    return area


def _iou(intersection: torch.Tensor, size_a: torch.Tensor, size_b: torch.Tensor) -> torch.Tensor:
    """IoU ``[M, K]`` from intersections ``[M, K]`` and sizes (areas or volumes) ``[M]``, ``[K]``."""
    union = size_a[:, None] + size_b[None] - intersection
    return (intersection / union.clamp(min=torch.finfo(union.dtype).tiny)).clamp(0.0, 1.0)


def iou_bev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rotated bird's-eye-view IoU ``[M, K]`` of ``a [M, 7]`` and ``b [K, 7]``, in ``a``'s dtype."""
    a64, b64 = a.double(), b.double().to(a.device)
    area_a, area_b = a64[:, 3] * a64[:, 4], b64[:, 3] * b64[:, 4]
    return _iou(intersection_area_bev(a64, b64), area_a, area_b).to(a.dtype)


def iou_3d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """3D IoU ``[M, K]`` of ``a [M, 7]`` and ``b [K, 7]`` (boxes upright, rotated about z):
    BEV intersection × overlap in z over the union of volumes, in ``a``'s dtype."""
    a64, b64 = a.double(), b.double().to(a.device)
    low_a, high_a = a64[:, 2] - a64[:, 5] / 2, a64[:, 2] + a64[:, 5] / 2
    low_b, high_b = b64[:, 2] - b64[:, 5] / 2, b64[:, 2] + b64[:, 5] / 2
    top = torch.minimum(high_a[:, None], high_b[None])
    overlap_z = (top - torch.maximum(low_a[:, None], low_b[None])).clamp(min=0)
    intersection = intersection_area_bev(a64, b64) * overlap_z
    volume_a, volume_b = a64[:, 3:6].prod(dim=1), b64[:, 3:6].prod(dim=1)
    return _iou(intersection, volume_a, volume_b).to(a.dtype)


def rotated_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    max_boxes: int | None = None,
) -> torch.Tensor:
    """Greedy non-maximum suppression on BEV IoU: indices int64 ``[k]`` into ``boxes [M, 7]``
    kept, by descending ``scores [M]`` (ties keep input order). A box is dropped when its IoU with
    a kept, higher-scoring box exceeds ``iou_threshold``; at most ``max_boxes`` are kept."""
    order = scores.argsort(descending=True, stable=True)
    ranked = boxes[order]
    overlapping = (iou_bev(ranked, ranked) > iou_threshold).cpu()
    limit = len(order) if max_boxes is None else max_boxes
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep: list[int] = []
    for rank in range(len(order)):
        if len(keep) >= limit:
            break
        if suppressed[rank]:
            continue
        keep.append(rank)
        suppressed |= overlapping[rank]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def boxes_in_range(
    boxes: torch.Tensor, point_range: tuple[float, float, float, float, float, float]
) -> torch.Tensor:
    """Whether each centre of ``boxes [M, 7]`` lies in the x/y extent of ``point_range``
    (x_min, y_min, z_min, x_max, y_max, z_max), half-open like the voxel grid → bool ``[M]``."""
    x_min, y_min, _, x_max, y_max, _ = point_range
    x, y = boxes[:, 0], boxes[:, 1]
    return (x >= x_min) & (x < x_max) & (y >= y_min) & (y < y_max)
