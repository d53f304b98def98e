"""Templates: the book a notification is rendered from (the built-ins overlaid with the stored
ones), and the admin's listing and replacing them."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier import domain
from services.notifier import repository as repo
from services.notifier.templates import BUILTIN, Template
from shared.errors import InvalidInput


async def template_book(session: AsyncSession) -> dict[str, Template]:
    """Built-in templates overlaid with the stored ones."""
    book = dict(BUILTIN)
    for code, row in (await repo.stored_templates(session)).items():
        book[code] = Template(code, row.category, row.texts, tuple(row.variables))
    return book


async def list_templates(session: AsyncSession) -> list[dict[str, Any]]:
    stored = await repo.stored_templates(session)
    book = await template_book(session)
    return [book[c].as_dict(builtin=c not in stored) for c in sorted(book)]


async def put_template(session: AsyncSession, code: str, body: dict[str, Any]) -> dict[str, Any]:
    variables = list(dict.fromkeys(body["variables"]))
    try:
        domain.check_texts(body["texts"], variables)
    except domain.TemplateError as exc:
        raise InvalidInput(str(exc)) from exc
    builtin = BUILTIN.get(code)
    if builtin is not None:
        missing = set(builtin.variables) - set(variables)
        if missing:  # its trigger passes these: a replacement must accept them
            raise InvalidInput(
                f"template {code} is given {', '.join(sorted(builtin.variables))} by its "
                f"trigger: declare {', '.join(sorted(missing))} too"
            )
        if body["category"] != builtin.category:
            raise InvalidInput(f"template {code} is {builtin.category} (its trigger's category)")
    await repo.put_template(
        session,
        {
            "code": code,
            "category": body["category"],
            "texts": json.dumps(body["texts"], ensure_ascii=False),
            "variables": json.dumps(variables),
        },
    )
    return Template(code, body["category"], body["texts"], tuple(variables)).as_dict(builtin=False)
