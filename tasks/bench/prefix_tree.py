"""The decode plan of packed scoring (tasks/bench/packed.py): the prefix tree of a group's sequences, each trie node
(a token at a position) decoded once for every sequence through it, against the prefix the KV cache kept from the
previous group."""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.bench.scored import check_pair, common_prefix


@dataclass(eq=False)
class _Node:
    token: int
    depth: int
    seqs: list[int] = field(default_factory=list)  # the group's sequences passing through this node
    children: dict[int, _Node] = field(default_factory=dict)
    min_cap: int = 1 << 30  # the smallest reuse cap of the sequences through it (see plan_group)
    output: bool = False  # some sequence reads the logits at this node
    cached: bool = False  # its KV cell is taken from the kept prefix, not decoded
    row: int = -1  # its row among the decoded outputs


@dataclass(frozen=True)
class Plan:
    """How one group is decoded: the trie nodes to decode (preorder: a node after its parent), the cells of the kept
    prefix each sequence reuses, and where each sequence reads its logits."""

    kept: list[int]  # the kept prefix the plan was made against
    nodes: list[_Node]  # decoded, in batch order
    reuse: list[int]  # per sequence: positions 0..reuse-1 come from the kept prefix
    paths: list[list[_Node]]  # per sequence: its nodes by depth (the decoded ones and the cached ones)

    @property
    def n_outputs(self) -> int:
        return sum(n.output for n in self.nodes)


class Trie:
    """The prefix tree of a group's sequences (seq_id = order of addition) against a kept prefix.

    A node is taken from the kept prefix ("cached") when its parent is and every sequence through it has it in its
    reusable prefix: the common prefix with ``kept``, capped before the sequence's first read position (whose logits
    the cache does not hold). Every sequence through a decoded node therefore has the same cells before it, as
    llama.cpp requires of sequences that share a batch token. Cached nodes lie on the kept path only."""

    def __init__(self, kept: list[int]):
        self.kept, self.root = kept, _Node(-1, -1)
        self.paths: list[list[_Node]] = []
        self.n_nodes = 0

    def add(self, ctx: list[int], cont: list[int]) -> None:
        check_pair(ctx, cont)
        tokens = (ctx + cont)[:-1]  # the last token predicts nothing that is read: it is not decoded
        s, cap = len(self.paths), min(common_prefix(self.kept, tokens), len(ctx) - 1)
        node, path = self.root, []
        for depth, tok in enumerate(tokens):
            child = node.children.get(tok)
            if child is None:
                child = node.children[tok] = _Node(tok, depth)
                self.n_nodes += 1
            child.seqs.append(s)
            child.min_cap = min(child.min_cap, cap)
            child.output = child.output or depth >= len(ctx) - 1
            path.append(child)
            node = child
        self.paths.append(path)

    def n_cached(self) -> int:
        node, n = self.root, 0
        for depth, tok in enumerate(self.kept):
            node = node.children.get(tok)
            if node is None or node.min_cap <= depth:
                break
            n += 1
        return n

    def n_new(self) -> int:
        """Tokens the group decodes."""
        return self.n_nodes - self.n_cached()

    def plan(self) -> Plan:
        n_cached, node = self.n_cached(), self.root
        for tok in self.kept[:n_cached]:
            node = node.children[tok]
            node.cached = True
        nodes: list[_Node] = []
        stack = list(reversed(self.root.children.values()))
        while stack:  # preorder, children in insertion order: each sequence's nodes in increasing position
            node = stack.pop()
            if not node.cached:
                nodes.append(node)
            stack.extend(reversed(node.children.values()))
        reuse = [sum(n.cached for n in path) for path in self.paths]
        return Plan(self.kept, nodes, reuse, self.paths)


def plan_group(pairs: list[tuple[list[int], list[int]]], kept: list[int]) -> Plan:
    """The decode plan of ``pairs`` (one sequence each, seq_id = index) given the tokens ``kept`` whose cells the
    cache holds at positions 0..len(kept)-1."""
    trie = Trie(kept)
    for ctx, cont in pairs:
        trie.add(ctx, cont)
    return trie.plan()
