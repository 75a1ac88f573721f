"""Canned-response placeholders rendered by Jinja2's ``SandboxedEnvironment`` (the
``core.ports.TextTemplates`` port).

The sandbox keeps a body away from attributes like ``__class__``; on top of it a body may
only print values and test them (``{{ … }}``, a short list of filters, ``{% if %}``): no
loops, macros, includes or assignments, so rendering costs about the body's own length,
and the output is cut off at ``max_chars`` while it is generated.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from posventa.core.errors import ValidationError

#: What a body may use: printing, filters, tests, conditions, literals, attribute access.
ALLOWED_NODES = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Const,
    nodes.Filter, nodes.Test, nodes.If, nodes.CondExpr, nodes.And, nodes.Or, nodes.Not, nodes.Compare,
    nodes.Operand, nodes.Concat, nodes.Keyword, nodes.List, nodes.Tuple,
)
#: Filters whose output is at most a little longer than their input (``center(10**9)`` or
#: ``indent`` with a huge width would not be).
FILTERS = frozenset({"upper", "lower", "title", "capitalize", "trim", "default", "d", "truncate", "string",
                     "length", "first", "last", "e", "escape"})


class SandboxedTemplates:
    def __init__(self) -> None:
        # Plain text out (an email or a chat message), never HTML: no autoescaping.
        self._env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)

    def check(self, body: str, *, field: str, variables: Collection[str]) -> None:
        try:
            tree = self._env.parse(body)
        except TemplateSyntaxError as exc:
            raise ValidationError(f"{field}: line {exc.lineno}: {exc.message}", field=field) from None
        for node in tree.find_all(nodes.Node):
            if not isinstance(node, ALLOWED_NODES):
                raise ValidationError(f"{field}: only {{{{ placeholders }}}}, filters and {{% if %}} are allowed "
                                      f"(found {type(node).__name__})", field=field)
            if isinstance(node, nodes.Filter) and node.name not in FILTERS:
                raise ValidationError(f"{field}: filter {node.name!r} is not allowed "
                                      f"(use {', '.join(sorted(FILTERS))})", field=field)
            if isinstance(node, nodes.Name) and node.name not in variables:
                raise ValidationError(f"{field}: unknown placeholder {node.name!r} "
                                      f"(use {', '.join(variables)})", field=field)

    def render(self, body: str, variables: Mapping[str, Any], *, field: str, max_chars: int) -> str:
        out: list[str] = []
        size = 0
        try:
            for chunk in self._env.from_string(body).generate(dict(variables)):
                size += len(chunk)
                if size > max_chars:
                    raise ValidationError(f"{field} renders longer than {max_chars} characters", field=field)
                out.append(chunk)
        except (UndefinedError, SecurityError, TemplateSyntaxError, TypeError, ValueError) as exc:
            raise ValidationError(f"{field}: {str(exc)[:200]}", field=field) from None
        return "".join(out)
