"""The final section of a thinking-format answer, found incrementally: the one extractor that `alphagate serve`,
evaluation (tasks/bench/metrics.split_thinking) and the DPO answer check all use, so they agree on every text.

The final section is what lies inside the first final section (<final>...</final>) when the model wrote one,
else everything outside the reasoning sections (<think>...</think>). Reasoning is never shown:

- reasoning sections nest (``<think>`` inside ``<think>`` needs its own ``</think>``); tags of the final section
  inside reasoning are reasoning text;
- a reasoning section inside the final section is reasoning too (``<final>42 <think>x</think></final>`` is "42");
- a stray ``</think>`` outside any section ends reasoning that was opened without a tag: the outside text before
  it is reasoning (``secret</think> 42`` is "42"); inside the final section a stray ``</think>`` or a second
  ``<final>`` is dropped; a stray ``</final>`` outside any section closes an untagged final section (the
  outside text before it);
- an unclosed reasoning section stays private; an unclosed final section is the answer so far;
- ``opened``: the prompt itself opened the reasoning section (a chat template that ends the prompt with
  ``<think>``; see ``opens_reasoning``), so the generated text starts inside it.

FinalSectionFilter decides this for text fed in any chunking, so a streamed answer is exactly the non-streamed
one: text outside the tags is held back until the stream shows whether a final section follows, a tag split
across chunks is held back until it is complete. The reasoning is hashed and counted; its text is kept only
when asked (``keep_reasoning``, for evaluation's debug audit; serve never keeps it). Its text is the reasoning
sections' contents, in the order the filter recognises them as reasoning.
"""

from __future__ import annotations

import hashlib

THINK = ("<think>", "</think>")
FINAL = ("<final>", "</final>")


def opens_reasoning(prompt: str, think: tuple[str, str] = THINK) -> bool:
    """Whether a prompt ends inside a reasoning section it opened (the chat template or a prefill appended the
    opening tag), so that what the model generates starts inside the reasoning section."""
    return prompt.rstrip().endswith(think[0])


class FinalSectionFilter:
    """Feed generated text in any chunking; ``feed`` returns what may be shown now, ``finish`` the rest.
    ``done``: the final section is complete (what follows is ignored; a server may stop generating)."""

    def __init__(self, think: tuple[str, str] = THINK, final: tuple[str, str] = FINAL, *, opened: bool = False,
                 keep_reasoning: bool = False):
        self.think, self.final = tuple(think), tuple(final)
        self.mode = "outside"  # outside | final | done: the section we are in when not in reasoning
        self.depth = 1 if opened else 0  # nesting depth of reasoning sections; > 0: inside reasoning
        self.pending = ""  # unparsed text (may hold the start of a tag)
        self.held = ""  # outside text held back until we know whether a final section follows
        self.saw_final = False
        self._reasoning = hashlib.sha256()
        self.reasoning_chars = 0
        self._kept: list[str] | None = [] if keep_reasoning else None

    @property
    def state(self) -> str:
        """outside | think | final | done."""
        return "think" if self.depth and self.mode != "done" else self.mode

    @property
    def done(self) -> bool:
        return self.mode == "done"

    @property
    def reasoning_sha256(self) -> str | None:
        return self._reasoning.hexdigest() if self.reasoning_chars else None

    @property
    def reasoning_text(self) -> str | None:
        """The reasoning itself, only when the filter was made with ``keep_reasoning``."""
        return None if self._kept is None else "".join(self._kept)

    def _reason(self, text: str) -> None:
        if text:
            self._reasoning.update(text.encode("utf-8"))
            self.reasoning_chars += len(text)
            if self._kept is not None:
                self._kept.append(text)

    @staticmethod
    def _partial_tag_start(text: str, tags: tuple[str, ...]) -> int:
        """Index where a possible (incomplete) tag begins at the end of ``text``; len(text) if none."""
        for i in range(max(0, len(text) - max(len(t) for t in tags) + 1), len(text)):
            if any(t.startswith(text[i:]) for t in tags):
                return i
        return len(text)

    def _next_tag(self, tags: tuple[str, ...]) -> tuple[int, str] | None:
        """The earliest complete tag in ``pending`` (the longest one where two start at the same place)."""
        found = [(i, -len(t), t) for t in tags if (i := self.pending.find(t)) >= 0]
        if not found:
            return None
        i, _, tag = min(found)
        return i, tag

    def feed(self, text: str) -> str:
        self.pending += text
        out = []
        (t_open, t_close), (f_open, f_close) = self.think, self.final
        while self.pending and self.mode != "done":
            if self.depth:  # reasoning: only the reasoning tags matter (they nest)
                tags = (t_open, t_close)
            elif self.mode == "final":
                tags = (f_close, t_open, t_close, f_open)
            else:
                tags = (t_open, f_open, t_close, f_close)
            hit = self._next_tag(tags)
            if hit is None:  # no complete tag: consume all but a possible tag start at the end
                cut = self._partial_tag_start(self.pending, tags)
                text, self.pending = self.pending[:cut], self.pending[cut:]
                if self.depth:
                    self._reason(text)
                elif self.mode == "final":
                    out.append(text)
                else:
                    self.held += text
                break
            i, tag = hit
            text, self.pending = self.pending[:i], self.pending[i + len(tag):]
            if self.depth:
                self.depth += 1 if tag == t_open else -1
                self._reason(text + (tag if self.depth else ""))  # nested tags are reasoning text
            elif self.mode == "final":
                out.append(text)
                if tag == f_close:
                    self.mode = "done"
                elif tag == t_open:
                    self.depth = 1
                # a stray </think> or a second <final> inside the final section: dropped
            else:
                self.held += text
                if tag == t_open:
                    self.depth = 1
                elif tag == f_open:
                    self.saw_final, self.held, self.mode = True, "", "final"
                elif tag == t_close:  # reasoning opened without a tag ends here: all outside text so far
                    self._reason(self.held)
                    self.held = ""
                else:  # a stray </final>: the outside text before it was an untagged final section
                    out.append(self.held)
                    self.saw_final, self.held, self.mode = True, "", "done"
        if self.mode == "done":
            self.pending = ""
        return "".join(out)

    def finish(self) -> str:
        """End of generation: an unclosed reasoning section stays private; held outside text is released
        only when there was no final section."""
        rest = ""
        if self.depth and self.mode != "done":
            self._reason(self.pending)
        elif self.mode == "final":
            rest = self.pending
        elif self.mode == "outside":
            self.held += self.pending
        self.pending = ""
        if not self.saw_final:
            rest, self.held = self.held.strip(), ""
        self.mode = "done"
        return rest


def final_section(text: str, think: tuple[str, str] = THINK, final: tuple[str, str] = FINAL, *,
                  opened: bool = False, keep_reasoning: bool = False) -> tuple[str, FinalSectionFilter]:
    """(the final section of a whole text, stripped; the filter, for the reasoning's hash, length and text)."""
    f = FinalSectionFilter(think, final, opened=opened, keep_reasoning=keep_reasoning)
    return (f.feed(text) + f.finish()).strip(), f
