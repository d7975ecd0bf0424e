"""The final section of a thinking-format answer, found incrementally: what `alphagate serve` returns.

The final section is what lies inside the final tags (<final>...</final>) when the model used them, else
everything outside the reasoning tags (<think>...</think>). FinalSectionFilter decides this for text fed in
any chunking, so a streamed answer is exactly the non-streamed one: text outside the tags is held back until
the stream shows whether a final section follows, a tag split across chunks is held back until it is
complete, an unclosed reasoning section stays private. The reasoning is only hashed and counted.
"""

from __future__ import annotations

import hashlib


class FinalSectionFilter:
    """Feed generated text in any chunking; ``feed`` returns what may be shown now, ``finish`` the rest.
    The reasoning (inside the think tags) is accumulated for hashing only."""

    def __init__(self, think: tuple[str, str] = ("<think>", "</think>"),
                 final: tuple[str, str] = ("<final>", "</final>")):
        self.think, self.final = think, final
        self.state = "outside"  # outside | think | final | done
        self.pending = ""  # unparsed text (may hold the start of a tag)
        self.held = ""  # outside text held back until we know whether a final section follows
        self.saw_final = False
        self._reasoning = hashlib.sha256()
        self.reasoning_chars = 0

    @property
    def reasoning_sha256(self) -> str | None:
        return self._reasoning.hexdigest() if self.reasoning_chars else None

    def _reason(self, text: str) -> None:
        self._reasoning.update(text.encode("utf-8"))
        self.reasoning_chars += len(text)

    @staticmethod
    def _partial_tag_start(text: str, tags: tuple[str, ...]) -> int:
        """Index where a possible (incomplete) tag begins at the end of ``text``; len(text) if none."""
        for i in range(max(0, len(text) - max(len(t) for t in tags) + 1), len(text)):
            if any(t.startswith(text[i:]) for t in tags):
                return i
        return len(text)

    def feed(self, text: str) -> str:
        self.pending += text
        out = []
        while self.pending:
            if self.state == "done":
                self.pending = ""
                break
            if self.state == "think":
                end = self.pending.find(self.think[1])
                if end < 0:
                    cut = self._partial_tag_start(self.pending, (self.think[1],))
                    self._reason(self.pending[:cut])
                    self.pending = self.pending[cut:]
                    break
                self._reason(self.pending[:end])
                self.pending = self.pending[end + len(self.think[1]):]
                self.state = "outside"
            elif self.state == "final":
                end = self.pending.find(self.final[1])
                if end < 0:
                    cut = self._partial_tag_start(self.pending, (self.final[1],))
                    out.append(self.pending[:cut])
                    self.pending = self.pending[cut:]
                    break
                out.append(self.pending[:end])
                self.pending = ""
                self.state = "done"
            else:  # outside: look for the next opening tag
                starts = [(self.pending.find(t), t) for t in (self.think[0], self.final[0])]
                starts = [(i, t) for i, t in starts if i >= 0]
                if not starts:
                    cut = self._partial_tag_start(self.pending, (self.think[0], self.final[0]))
                    self.held += self.pending[:cut]
                    self.pending = self.pending[cut:]
                    break
                i, tag = min(starts)
                self.held += self.pending[:i]
                self.pending = self.pending[i + len(tag):]
                if tag == self.final[0]:
                    self.saw_final, self.held, self.state = True, "", "final"
                else:
                    self.state = "think"
        return "".join(out)

    def finish(self) -> str:
        """End of generation: an unclosed reasoning section stays private; held outside text is released
        only when there was no final section."""
        rest = ""
        if self.state == "think":
            self._reason(self.pending)
        elif self.state == "final":
            rest = self.pending
        elif self.state == "outside":
            self.held += self.pending
        self.pending = ""
        if not self.saw_final:
            rest, self.held = self.held.strip(), ""
        self.state = "done"
        return rest


def final_section(text: str, **tags) -> tuple[str, FinalSectionFilter]:
    f = FinalSectionFilter(**tags)
    return (f.feed(text) + f.finish()).strip(), f
