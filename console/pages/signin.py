"""Sign-in at `/`, sign-out, and the language switch."""

from __future__ import annotations

import math
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from console.audit import record
from console.auth import COOKIE, NotSignedIn, Refused
from console.i18n import LANG_COOKIE, LANGUAGES
from console.web import Signed, console_of, render

router = APIRouter()


def _cookie(response: Response, request: Request, value: str, max_age: int) -> None:
    settings = console_of(request).settings
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=settings.console_cookie_secure,
        path="/",
    )


@router.get("/", response_class=HTMLResponse)
async def sign_in_page(request: Request) -> Response:
    try:
        await console_of(request).gate.who(request)
    except NotSignedIn:
        return render(request, "signin.html", ended=bool(request.cookies.get(COOKIE)))
    return RedirectResponse("/dashboard", status_code=303)


@router.post("/", response_class=HTMLResponse)
async def sign_in(
    request: Request,
    name: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    console = console_of(request)
    if not console.gate.same_origin(request):
        raise Refused("bad_origin", "this request did not come from the console's pages")
    throttle = console.gate.throttle
    address = request.client.host if request.client else "unknown"
    # takes one guess from the name's and the address's buckets (given back if it is right)
    wait = await throttle.admit(name[:64], address)
    if wait:
        # refused before the password is looked at: a guess costs nothing to refuse
        await record(
            console.db,
            operator=name[:64] or "-",
            role="-",
            action="sign_in",
            target=f"operator:{name[:64]}",
            status=429,
            outcome="throttled",
        )
        answer = render(request, "signin.html", status=429, throttled=True, name=name)
        answer.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return answer
    if not name or not await console.gate.check_password(name, password):
        await record(
            console.db,
            operator=name[:64] or "-",
            role="-",
            action="sign_in",
            target=f"operator:{name[:64]}",
            status=401,
            outcome="wrong_password",
        )
        return render(request, "signin.html", status=401, failed=True, name=name)
    await throttle.succeeded(name[:64], address)
    response = RedirectResponse("/dashboard", status_code=303)
    _cookie(
        response, request, await console.gate.sign_in(name), console.settings.console_session_ttl_s
    )
    return response


@router.post("/signout")
async def sign_out(page: Signed) -> Response:
    await page.console.gate.check_write(page.request, page.who, "viewer")
    await page.console.gate.sign_out(page.who)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/lang/{code}")
async def switch_language(code: str, request: Request, next: str = "/") -> Response:
    target = (
        next
        if next.startswith("/") and not urlsplit(next).netloc and not next.startswith("//")
        else "/"
    )
    response = RedirectResponse(target, status_code=303)
    if code in LANGUAGES:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="strict", path="/")
    return response
