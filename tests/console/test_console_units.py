"""The console's pure parts: operator forms to API bodies, password hashes, the catalogue of
Chinese texts."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from console import passwords
from console.auth import SignInThrottle
from console.forms import FormError, adjustment, item_body, parse_ladder, rule_body
from console.i18n import ZH, translate
from console.passwords import MEMORY_KIB, PARALLELISM, TIME_COST, PasswordHash
from console.settings import DEV_CONSOLE_PASSWORD, Settings
from shared.settings import dev_service_token

CONSOLE = Path(__file__).resolve().parents[2] / "console"


def test_a_checkin_rule_form_becomes_the_rule_task_progress_takes() -> None:
    form = {
        "name": " 每日签到 ",
        "action": "checkin",
        "kind": "checkin",
        "ladder": "1=5\n3=10\n7=30",
        "cycle_days": "7",
        "after_cycle": "restart",
        "makeup_window_days": "7",
        "makeup_max_per_month": "2",
        "makeup_cost_points": "20",
        "target_count": "1",
        "reward_points": "",
        "active": "on",
    }
    assert rule_body(form) == {
        "name": "每日签到",
        "action": "checkin",
        "kind": "checkin",
        "after_cycle": "restart",
        "target_count": 1,
        "cycle_days": 7,
        "ladder": [{"day": 1, "amount": 5}, {"day": 3, "amount": 10}, {"day": 7, "amount": 30}],
        "makeup": {"window_days": 7, "max_per_month": 2, "cost_points": 20},
        "active": True,
    }


def test_a_count_rule_form_drops_checkin_fields_and_reads_conditions() -> None:
    body = rule_body(
        {
            "name": "评论",
            "action": "comment",
            "kind": "count",
            "reward_points": "10",
            "cycle_days": "7",
            "after_cycle": "hold",
            "conditions": '[{"attribute": "length", "op": ">=", "value": 20}]',
        }
    )
    assert "cycle_days" not in body and "after_cycle" not in body and "ladder" not in body
    assert body["conditions"] == [{"attribute": "length", "op": ">=", "value": 20}]
    assert body["active"] is False  # an unchecked box


def test_a_patch_clears_what_the_form_left_empty() -> None:
    body = rule_body(
        {"name": "x", "action": "like", "kind": "count", "reward_points": "1"}, for_patch=True
    )
    assert body["max_per_period"] is None and body["pending_days"] is None
    assert body["conditions"] == [] and "active" not in body


@pytest.mark.parametrize(
    "form, message",
    [
        ({"name": "x", "target_count": "three"}, "target_count"),
        ({"name": "x", "conditions": "{not json"}, "conditions"),
        ({"name": "x", "conditions": '{"a": 1}'}, "conditions"),
        ({"name": "x", "kind": "checkin", "ladder": "1-5"}, "ladder"),
        ({"name": "x", "kind": "checkin", "ladder": "1=5", "makeup_window_days": "3"}, "make-up"),
    ],
)
def test_unreadable_rule_forms_are_refused_with_the_field_named(form, message) -> None:
    with pytest.raises(FormError, match=message):
        rule_body(form)


def test_ladder_text_reads_commas_colons_and_lines() -> None:
    assert parse_ladder("1:5, 3=10\n\n 7 = 30 ") == [
        {"day": 1, "amount": 5},
        {"day": 3, "amount": 10},
        {"day": 7, "amount": 30},
    ]


def test_item_forms_need_both_parts_of_a_limit_and_keep_the_type_on_patch() -> None:
    body = item_body(
        {
            "name": "杯子",
            "category": "merch",
            "type": "physical",
            "points_price": "300",
            "stock": "5",
            "limit_period": "lifetime",
            "limit_quantity": "1",
            "tags": "hot, new",
            "active": "on",
        }
    )
    assert body["per_user_limit"] == {"period": "lifetime", "quantity": 1}
    assert body["tags"] == ["hot", "new"] and body["active"] is True
    assert "type" not in item_body({"type": "coupon", "stock": "3"}, for_patch=True)
    with pytest.raises(FormError, match="per-user limit"):
        item_body({"limit_period": "day"})


def test_adjustments_need_points_a_reason_and_a_key() -> None:
    form = {"direction": "debit", "points": "5", "reason": "误发", "idempotency_key": "k1"}
    assert adjustment(form) == (
        "debits",
        {"points": 5, "reason": "误发", "idempotency_key": "k1", "asset": "points"},
    )
    for broken in (
        {"points": "0"},
        {"points": "-3"},
        {"reason": " "},
        {"idempotency_key": ""},
        {"direction": "steal"},
    ):
        with pytest.raises(FormError):
            adjustment({**form, **broken})


def test_password_hashes_verify_only_their_password_and_parse_back() -> None:
    stored = PasswordHash.create("correct horse battery")
    again = PasswordHash.parse(stored.encode())
    assert again.verify("correct horse battery") and not again.verify("correct horse batterz")
    assert PasswordHash.create("same").encode() != PasswordHash.create("same").encode()  # salted
    for bad in ("plain", "bcrypt$1$2$3$4$5", "scrypt$3$8$1$AA$AA", "scrypt$16384$8$1$!!$AA"):
        with pytest.raises(ValueError):
            PasswordHash.parse(bad)


def test_new_hashes_are_argon2id_phc_strings_with_the_chosen_parameters() -> None:
    encoded = PasswordHash.create("correct horse battery").encode()
    assert encoded.startswith(f"$argon2id$v=19$m={MEMORY_KIB},t={TIME_COST},p={PARALLELISM}$")
    assert (MEMORY_KIB, TIME_COST, PARALLELISM) == (19 * 1024, 2, 1)  # OWASP's first option
    params = extract_parameters(encoded)
    assert params.type is Type.ID and params.hash_len == 32 and params.salt_len == 16
    assert not PasswordHash.parse(encoded).needs_rehash
    # a hash made elsewhere with the argon2 library's own defaults verifies the same way
    foreign = PasswordHasher().hash("correct horse battery")
    assert PasswordHash.parse(foreign).verify("correct horse battery")


def legacy_scrypt(password: str) -> str:
    """A hash in the format the console wrote before argon2id."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    b64 = [base64.urlsafe_b64encode(v).decode().rstrip("=") for v in (salt, digest)]
    return f"scrypt$16384$8$1${b64[0]}${b64[1]}"


def test_old_scrypt_hashes_still_verify_and_ask_to_be_rehashed() -> None:
    old = PasswordHash.parse(legacy_scrypt("correct horse battery"))
    assert old.scheme == "scrypt" and old.needs_rehash
    assert old.verify("correct horse battery") and not old.verify("correct horse batterz")
    # argon2id with other parameters (weaker, or stronger) is rehashed too
    for other in (PasswordHasher(time_cost=1, memory_cost=8192), PasswordHasher()):
        assert PasswordHash.parse(other.hash("x" * 12)).needs_rehash


@pytest.mark.parametrize(
    "encoded, message",
    [
        ("$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43, "argon2id"),
        ("$argon2id$v=19$m=1048576,t=2,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43, "out of range"),
        ("$argon2id$v=19$m=19456,t=100,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43, "out of range"),
        ("$argon2id$v=19$m=19456,t=2,p=1$!!!!$" + "A" * 43, "base64"),
        ("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$" + "A" * 43, "salt"),
        ("$argon2id$v=19$m=19456,t=2,p=1", "argon2id"),
    ],
)
def test_argon2_hashes_out_of_bounds_or_malformed_are_refused(encoded, message) -> None:
    """A configured hash whose parameters would let one sign-in take the pod's memory (or a
    core for seconds) is refused at start-up, with the reason."""
    with pytest.raises(ValueError, match=message):
        PasswordHash.parse(encoded)


def test_the_hash_printer_refuses_short_passwords_and_prints_argon2id(monkeypatch, capsys) -> None:
    monkeypatch.setattr(passwords.getpass, "getpass", lambda prompt: "short")
    assert passwords.main() == 2
    monkeypatch.setattr(passwords.getpass, "getpass", lambda prompt: "long enough password")
    assert passwords.main() == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("$argon2id$") and PasswordHash.parse(printed).verify(
        "long enough password"
    )


def test_prod_refuses_the_dev_secret_and_the_dev_operators() -> None:
    prod = {
        "env": "prod",
        "admin_token": "a" * 40,
        "jwt_secret": "j" * 40,
        "ingest_keys": {"k" * 20: ["app"]},
        "service_credentials": {},
    }
    with pytest.raises(ValueError, match="CONSOLE_SECRET"):
        Settings(**prod)
    with pytest.raises(ValueError, match="CONSOLE_USERS"):
        Settings(**prod, console_secret="s" * 40)
    users = {"li": {"role": "operator", "password_hash": PasswordHash.create("x" * 12).encode()}}
    # the console calls the services with its own credential, which must be a real one
    with pytest.raises(ValueError, match="JIFEN_SERVICE_TOKEN"):
        Settings(**prod, console_secret="s" * 40, console_users=users)
    with pytest.raises(ValueError, match="JIFEN_SERVICE_TOKEN"):
        Settings(
            **prod,
            console_secret="s" * 40,
            console_users=users,
            service_token=dev_service_token("console"),
        )
    dev_password = PasswordHash.create(DEV_CONSOLE_PASSWORD).encode()
    with pytest.raises(ValueError, match="dev password"):
        Settings(
            **prod,
            console_secret="s" * 40,
            console_users={"li": {"role": "admin", "password_hash": dev_password}},
            service_token="t" * 40,
        )
    ok = Settings(**prod, console_secret="s" * 40, console_users=users, service_token="t" * 40)
    assert ok.operators().keys() == {"li"} and ok.outbound_token == "t" * 40
    # ... and needs none of the services' secrets: it accepts no calls
    alone = Settings(
        env="prod", console_secret="s" * 40, console_users=users, service_token="t" * 40
    )
    assert alone.outbound_token == "t" * 40
    with pytest.raises(ValueError, match="role"):
        Settings(
            console_users={"li": {"role": "root", "password_hash": users["li"]["password_hash"]}}
        )
    assert set(Settings().operators()) == {"admin", "operator", "viewer"}  # dev


def test_every_text_the_pages_show_has_its_chinese() -> None:
    keys = set()
    for path in [*CONSOLE.glob("templates/*.html"), *CONSOLE.glob("pages/*.py")]:
        keys |= set(re.findall(r"""\bt\(\s*["']([^"']+)["']\s*\)""", path.read_text()))
        keys |= set(re.findall(r"""\(\s*"[a-z]+",\s*"/[a-z]*",\s*"([^"]+)",""", path.read_text()))
    missing = sorted(k for k in keys if k not in ZH)
    assert not missing
    assert translate("Dashboard", "zh") == "总览" and translate("Dashboard", "en") == "Dashboard"


async def test_sign_in_throttle_counts_only_failures_and_a_success_clears_the_name() -> None:
    """In the process (no Valkey configured): each guess is taken before the password is
    checked, and a right password gives it back."""
    throttle = SignInThrottle(failures=3, cooldown_s=60)
    assert throttle.redis is None and not throttle.shared
    for _ in range(3):
        assert await throttle.admit("ops", "10.0.0.1") == 0.0  # three wrong guesses
    assert 0 < await throttle.admit("ops", "10.0.0.1") <= 60  # one more guess a minute
    assert await throttle.admit("ops", "10.0.0.2") > 0  # the name is held from any address
    assert await throttle.admit("other", "10.0.0.1") == 0.0  # the address has 4 x 3 guesses
    await throttle.succeeded("other", "10.0.0.1")  # ... and that one was right
    await throttle.succeeded("ops", "10.0.0.2")  # a right password (a minute on) clears it
    assert await throttle.admit("ops", "10.0.0.2") == 0.0
    for n in range(9):  # 3 already + 9 = the address's 12
        assert await throttle.admit(f"name{n}", "10.0.0.1") == 0.0
    assert await throttle.admit("fresh", "10.0.0.1") > 0
    assert await throttle.admit("fresh", "10.0.0.3") == 0.0
    off = SignInThrottle(failures=0, cooldown_s=60)
    assert [await off.admit("ops", "x") for _ in range(10)] == [0.0] * 10
