"""Tree packing: tries of rows, where packed rows are cut, and the 4D mask they run under."""
from __future__ import annotations

import itertools
import random

import torch

from harness.model.tree_packing import pack_rows, split_points, tree_inputs


def random_rows(seed: int, n: int = 30, start: int = 3) -> list[tuple[int, ...]]:
    """Rows sharing a prefix of `start` tokens, then short random branches over a 3-token alphabet."""
    rng = random.Random(seed)
    head = tuple(rng.randrange(9) for _ in range(start))
    return sorted({head + tuple(rng.randrange(3) for _ in range(rng.randint(1, 7))) for _ in range(n)})


def ancestors(parents: list[int], node: int) -> set[int]:
    seen = {node}
    while parents[node] >= 0:
        node = parents[node]
        seen.add(node)
    return seen


def test_packed_rows_hold_every_row_exactly_once_and_respect_the_width():
    for seed in range(20):
        rows = random_rows(seed)
        members = list(range(len(rows)))
        random.Random(seed).shuffle(members)  # pack_rows sorts them itself
        width = 4 + seed
        packed = pack_rows(rows, members, 3, width)
        assert sorted(r for p in packed for r, _ in p.members) == sorted(members)
        for p in packed:
            assert len(p.tokens) <= width or len(p.members) == 1
            for r, path in p.members:
                assert [p.tokens[n] for n in path] == list(rows[r][3:])
                assert [p.depths[n] for n in path] == list(range(len(path)))
                assert [p.parents[n] for n in path] == [-1] + path[:-1]
            # a trie: no two nodes with the same parent and token
            assert len(set(zip(p.parents, p.tokens))) == len(p.tokens)


def test_subtree_ends_give_exactly_the_ancestor_relation():
    for seed in range(20):
        rows = random_rows(seed, n=40)
        for p in pack_rows(rows, range(len(rows)), 3, 1000):
            for j in range(len(p.tokens)):
                by_ends = {i for i in range(len(p.tokens)) if i <= j < p.ends[i]}
                assert by_ends == ancestors(p.parents, j)


def brute_force_duplication(lengths: list[int], shared: list[int], width: int) -> int:
    """Fewest duplicated tokens over every way to cut the rows into runs that fit."""
    n, best = len(lengths), None
    for cut_mask in itertools.product([False, True], repeat=n - 1):
        starts = [0] + [i + 1 for i, cut in enumerate(cut_mask) if cut]
        ends = starts[1:] + [n]
        nodes = [sum(lengths[i] - (shared[i] if i > a else 0) for i in range(a, b)) for a, b in zip(starts, ends)]
        if all(size <= width or b - a == 1 for size, a, b in zip(nodes, starts, ends)):
            cost = sum(shared[a] for a in starts[1:])
            best = cost if best is None else min(best, cost)
    return best


def test_split_points_duplicate_the_fewest_shared_tokens():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 8)
        lengths = [rng.randint(1, 9) for _ in range(n)]
        shared = [0] + [rng.randint(0, min(lengths[i - 1], lengths[i]) - 1) for i in range(1, n)]
        width = rng.randint(3, 25)
        starts = split_points(lengths, shared, width)
        assert starts[0] == 0 and starts == sorted(set(starts))
        assert sum(shared[a] for a in starts[1:]) == brute_force_duplication(lengths, shared, width)


def test_tree_mask_lets_a_node_see_its_prefix_its_ancestors_and_itself_only():
    rows = random_rows(1, n=12, start=0)
    packed = pack_rows(rows, range(len(rows)), 0, 1000) + pack_rows(rows[:3], range(3), 0, 1000)
    prefix_lens = [5, 2]
    ids, positions, mask = tree_inputs(packed, prefix_lens, pad_token=99, dtype=torch.float32, device=torch.device("cpu"))
    width = max(len(p.tokens) for p in packed)
    assert mask.shape == (2, 1, width, 5 + width)
    for b, p in enumerate(packed):
        allowed = mask[b, 0] == 0
        for j in range(width):
            real = j < len(p.tokens)
            expected_tree = ancestors(p.parents, j) if real else {j}
            assert {i for i in range(width) if allowed[j, 5 + i]} == expected_tree
            assert {i for i in range(5) if allowed[j, i]} == set(range(prefix_lens[b]))
            if real:
                assert ids[b, j] == p.tokens[j] and positions[b, j] == prefix_lens[b] + p.depths[j]
            else:
                assert ids[b, j] == 99
