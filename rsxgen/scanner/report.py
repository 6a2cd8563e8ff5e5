"""Collecting one file's diagnostics at the positions of the nodes they are about."""

from __future__ import annotations

import libcst as cst

from rsxgen.diagnostics import Diagnostic
from rsxgen.scanner.positions import Position, Positions
from runtime.text import shorten

_EMPTY = cst.Module(body=[])


class Report:
    """The diagnostics of one file, in the order found (they are sorted when rendered)."""

    def __init__(self, path: str, positions: Positions) -> None:
        self.path = path
        self.positions = positions
        self.diagnostics: list[Diagnostic] = []

    def at(self, node: cst.CSTNode, statement: cst.CSTNode) -> Position:
        """The position of `node`, found in the header of `statement`."""
        return self.positions.of(node, statement)

    def error(self, node: cst.CSTNode, statement: cst.CSTNode, code: str, message: str) -> None:
        line, col = self.at(node, statement)
        self.diagnostics.append(Diagnostic(self.path, line, col, code, message))


def code_of(node: cst.CSTNode) -> str:
    """The node's source text for quoting in a message, shortened beyond 200 characters."""
    return shorten(_EMPTY.code_for_node(node))
