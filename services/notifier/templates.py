# ruff: noqa: RUF001  (Chinese copy uses full-width punctuation on purpose)
"""The built-in templates, one per trigger (and one per variant of the expiry reminder's copy
experiment). Operations can replace any of them with `PUT /v1/templates/{code}`; a stored
template wins over the built-in one of the same code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Template:
    code: str
    category: str
    texts: dict[str, dict[str, str]]
    variables: tuple[str, ...]

    def as_dict(self, *, builtin: bool) -> dict[str, Any]:
        return {
            "code": self.code,
            "category": self.category,
            "texts": self.texts,
            "variables": list(self.variables),
            "builtin": builtin,
        }


def _t(
    code: str, category: str, variables: tuple[str, ...], zh: tuple[str, str], en: tuple[str, str]
) -> Template:
    return Template(
        code,
        category,
        {"zh-CN": {"title": zh[0], "body": zh[1]}, "en": {"title": en[0], "body": en[1]}},
        variables,
    )


EXPIRY_VARS = ("points", "expiry_date", "days_left", "value_yuan")

BUILTIN: dict[str, Template] = {
    t.code: t
    for t in (
        _t(
            "points_expiring",
            "reminders",
            EXPIRY_VARS,
            ("积分即将过期", "您有{points}积分将于{expiry_date}过期，快去积分商城兑换吧！"),
            ("Points expiring soon", "{points} points expire on {expiry_date}. Redeem them now!"),
        ),
        # The copy experiment's arms: a deadline ("30天后过期") against a value ("可兑换价值¥50").
        _t(
            "points_expiring.deadline",
            "reminders",
            EXPIRY_VARS,
            ("积分即将过期", "您有{points}积分{days_left}天后过期，别让它们白白浪费！"),
            (
                "Points expiring soon",
                "{points} points expire in {days_left} days. Don't lose them!",
            ),
        ),
        _t(
            "points_expiring.value",
            "reminders",
            EXPIRY_VARS,
            ("积分即将过期", "您有{points}积分，可兑换价值¥{value_yuan}，将于{expiry_date}过期"),
            (
                "Points expiring soon",
                "Your {points} points are worth ¥{value_yuan} and expire on {expiry_date}",
            ),
        ),
        _t(
            "streak_at_risk",
            "reminders",
            ("streak",),
            ("别让连续签到中断", "连续签到{streak}天,今日签到可获得额外积分!"),
            ("Keep your streak", "You have checked in {streak} days in a row: check in today!"),
        ),
        _t(
            "tasks_unfinished",
            "reminders",
            ("count",),
            ("今日任务未完成", "今天还有{count}个任务未完成，完成即可获得积分"),
            (
                "Tasks left today",
                "{count} of your daily tasks are still open: finish them for points",
            ),
        ),
        _t(
            "redemption_completed",
            "transactional",
            ("item_id", "quantity", "points", "redemption_id"),
            ("兑换成功", "您已成功兑换{item_id} x{quantity}，消耗{points}积分"),
            (
                "Redemption confirmed",
                "You redeemed {item_id} x{quantity} for {points} points",
            ),
        ),
        _t(
            "redemption_shipped",
            "transactional",
            ("item_id", "quantity", "redemption_id"),
            ("兑换商品已发货", "您兑换的商品（{item_id} x{quantity}）已发货，请留意查收"),
            ("Your item has shipped", "Your redemption ({item_id} x{quantity}) is on its way"),
        ),
        _t(
            "redemption_delivered",
            "transactional",
            ("item_id", "quantity", "redemption_id"),
            ("兑换商品已签收", "您兑换的商品（{item_id} x{quantity}）已送达"),
            ("Delivered", "Your redemption ({item_id} x{quantity}) has been delivered"),
        ),
        _t(
            "tier_raised",
            "transactional",
            ("tier", "tier_name"),
            ("会员等级提升", "恭喜您升级为{tier_name}会员，更多权益等您享受"),
            ("New tier", "Congratulations, you are now a {tier_name} member"),
        ),
        _t(
            "tier_lowered",
            "transactional",
            ("tier", "tier_name"),
            ("会员等级变更", "您的会员等级已调整为{tier_name}，多多参与即可重新升级"),
            ("Tier changed", "Your membership tier is now {tier_name}"),
        ),
        _t(
            "badge_awarded",
            "reminders",
            ("badge", "name"),
            ("获得新徽章", "恭喜您获得徽章「{name}」"),
            ("New badge", "You earned the badge \u201c{name}\u201d"),
        ),
    )
}
