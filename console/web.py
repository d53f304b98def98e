"""What every page shares: the signed-in operator, the language, rendering, and the one
way a write goes out (role, CSRF and origin checked; the call made; the audit row written)."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from console.audit import record
from console.auth import Gate, SignedIn
from console.i18n import DEFAULT_LANGUAGE, LANG_COOKIE, LANGUAGES, translate
from console.services import Reply, Services
from console.settings import Settings
from console.status import StatusBoard
from shared.db import Database

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _when(value: Any) -> str:
    """An ISO timestamp (or epoch seconds) shown to the minute, in the business timezone."""
    if value in (None, ""):
        return ""
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    tz = cast(tzinfo, TEMPLATES.env.globals["tz"])  # set from the settings at start-up
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")


TEMPLATES.env.filters["when"] = _when
TEMPLATES.env.globals["tz"] = UTC  # the business timezone once the console has started
TEMPLATES.env.filters["tojson_pretty"] = lambda v: json.dumps(
    v, ensure_ascii=False, indent=1, sort_keys=True, default=str
)


@dataclass
class Console:
    """The console's parts, built in the lifespan."""

    settings: Settings
    db: Database
    gate: Gate
    services: Services
    status: StatusBoard


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def language(request: Request) -> str:
    lang = request.cookies.get(LANG_COOKIE, DEFAULT_LANGUAGE)
    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


@dataclass
class Page:
    request: Request
    console: Console
    who: SignedIn
    lang: str

    @property
    def services(self) -> Services:
        return self.console.services

    def t(self, key: str) -> str:
        return translate(key, self.lang)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return render(self.request, template, status, who=self.who, lang=self.lang, **context)

    async def write(
        self,
        role: str,
        action: str,
        target: str,
        call: Awaitable[Reply],
        *,
        request: Any = None,
        before: Any = None,
    ) -> Reply:
        """The one way a write goes out: checked, made, recorded (a refusal is recorded too)."""
        try:
            await self.console.gate.check_write(self.request, self.who, role)
        except BaseException:
            if hasattr(call, "close"):
                call.close()  # the coroutine is never awaited
            raise
        reply = await call
        await record(
            self.console.db,
            operator=self.who.name,
            role=self.who.role,
            action=action,
            target=target,
            status=reply.status,
            outcome="done" if reply.ok else (reply.error or "refused"),
            request=request,
            before=before,
            after=reply.body if reply.ok else None,
            message=None if reply.ok else reply.message,
        )
        return reply

    def done(self, path: str, notice: str) -> RedirectResponse:
        """After a successful write: back to the page (303, so a reload does not repeat it)."""
        sep = "&" if "?" in path else "?"
        return RedirectResponse(f"{path}{sep}{urlencode({'notice': notice})}", status_code=303)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = context.pop("lang", None) or language(request)
    console = console_of(request)
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "t": lambda key: translate(key, lang),
            "lang": lang,
            "html_lang": "zh-CN" if lang == "zh" else "en",
            "notice": request.query_params.get("notice"),
            "has": console.services.available,
            "path": request.url.path,
            **context,
        },
        status_code=status,
    )


async def signed_in(request: Request) -> Page:
    console = console_of(request)
    who = await console.gate.who(request)
    return Page(request, console, who, language(request))


Signed = Annotated[Page, Depends(signed_in)]
