"""The dated price table of the billing model, loaded from ``prices.toml`` and checked.

Prices are data, not code, so that a reader can see each number's unit, where
it was read and when, and so that a re-read price is a one-line change with
its own date. The loader refuses anything the model could silently misprice:
a negative, infinite or NaN number, an unknown key, a plan that includes a
meter of another provider, a provider without exactly one paid plan, or a
missing setting the model needs. Each error names the key.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from progressbench.core.config import describe_validation_error
from progressbench.core.errors import ConfigError

_DATE = r"^\d{4}-\d{2}(-\d{2})?$"

#: Settings the billing model reads; a price file without one of them is refused.
REQUIRED_SETTINGS = (
    "billing.month_days",
    "cloud_run.rounding_s",
    "cloud_run.concurrency",
    "cloud_run.vcpu_per_instance",
    "cloud_run.gib_per_instance",
    "cloud_run.idle_tail_s",
    "cloud_run.min_instances",
    "vercel.memory_gb",
    "vercel.members",
    "cloudflare.do.gb_per_object",
    "cloudflare.do.ws_messages_per_request",
)
#: ...of which these may be 0 (the model divides by or rounds to the others).
MAY_BE_ZERO = frozenset({"cloud_run.idle_tail_s", "cloud_run.min_instances"})


#: a finite number ≥ 0 (TOML can spell inf and nan; a price cannot be either)
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: a finite number > 0
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Dated(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: where the number was read (a URL or a named document)
    source: str = Field(min_length=1)
    #: when it was read: YYYY-MM or YYYY-MM-DD
    as_of: str = Field(pattern=_DATE)
    #: the page's own last-updated stamp, or "undated"
    page_date: str = "undated"
    note: str = ""


class Meter(_Dated):
    """A unit price: ``price_usd`` for every ``per`` units, optionally sold in whole packages."""

    price_usd: Amount
    per: Positive = 1.0
    unit: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    package: Positive | None = None

    @property
    def unit_price(self) -> float:
        return self.price_usd / self.per


class Plan(_Dated):
    """A provider's plan: a monthly fee and what it includes."""

    provider: str = Field(min_length=1)
    #: the one plan per provider priced "without free tiers"
    paid: bool = False
    fee_month_usd: Amount = 0.0
    #: the fee is per team member (Vercel Pro)
    per_member: bool = False
    #: dollars of usage the fee includes (Vercel Pro)
    credit_usd: Amount = 0.0
    #: going over an included amount is refused rather than charged (free plans)
    hard_limits: bool = False
    included: dict[str, Amount] = Field(default_factory=dict)
    included_period: Literal["month", "day"] = "month"

    @model_validator(mode="after")
    def _paid_plans_charge(self) -> Plan:
        if self.paid and self.hard_limits:
            raise ValueError("a paid plan must charge for usage over its inclusions, not refuse it")
        return self


class Setting(_Dated):
    """A platform constant (sourced) or a modelling choice (``source = "ASSUMPTION"``)."""

    value: Amount
    unit: str = Field(min_length=1)
    why: str = Field(min_length=1)

    @property
    def assumption(self) -> bool:
        return self.source == "ASSUMPTION"


class PriceBook(BaseModel):
    """The whole table; look numbers up with :meth:`setting` and the ``meter``/``plan`` maps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    meter: dict[str, Meter]
    plan: dict[str, Plan]
    setting: dict[str, Setting]

    @model_validator(mode="after")
    def _consistent(self) -> PriceBook:
        for key, plan in self.plan.items():
            for included in plan.included:
                meter = self.meter.get(included)
                if meter is None:
                    raise ValueError(f"plan {key!r} includes unknown meter {included!r}")
                if meter.provider != plan.provider:
                    raise ValueError(f"plan {key!r} includes {included!r} of provider {meter.provider!r}")
        for provider in sorted({m.provider for m in self.meter.values()}):
            paid = [k for k, p in self.plan.items() if p.provider == provider and p.paid]
            if len(paid) != 1:
                raise ValueError(f"provider {provider!r} needs exactly one plan with paid = true, has {paid}")
        missing = [k for k in REQUIRED_SETTINGS if k not in self.setting]
        if missing:
            raise ValueError(f"missing setting(s): {', '.join(missing)}")
        zero = [k for k in REQUIRED_SETTINGS if k not in MAY_BE_ZERO and self.setting[k].value == 0]
        if zero:
            raise ValueError(f"setting(s) must be > 0: {', '.join(zero)}")
        return self

    def value(self, key: str) -> float:
        """A setting's value (every key in ``REQUIRED_SETTINGS`` is present after loading)."""
        return self.setting[key].value

    @property
    def month_s(self) -> float:
        return self.value("billing.month_days") * 86_400.0

    def plans_of(self, provider: str) -> list[tuple[str, Plan]]:
        """The provider's plans in file order (the tie-break when two cost the same)."""
        return [(k, p) for k, p in self.plan.items() if p.provider == provider]

    def paid_plan(self, provider: str) -> tuple[str, Plan]:
        return next((k, p) for k, p in self.plans_of(provider) if p.paid)

    def included_per_month(self, plan: Plan, meter: str) -> float:
        amount = plan.included.get(meter, 0.0)
        return amount * self.value("billing.month_days") if plan.included_period == "day" else amount


def load_prices(path: Path | None = None) -> PriceBook:
    """Read and check a price file; ``None`` reads the one packaged with progressbench."""
    if path is None:
        text = (resources.files("progressbench.reports") / "prices.toml").read_text()
        source = "built-in prices"
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"prices: cannot read {path}: {exc.strerror}") from None
        source = str(path)
    try:
        return PriceBook.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None


def prices_as_of(book: PriceBook) -> str:
    """The OLDEST ``as_of`` among the prices and plans: the table is only as current as its stalest price.

    Settings are left out: an assumption's date says when it was chosen, not
    how fresh a price is.
    """
    return min([m.as_of for m in book.meter.values()] + [p.as_of for p in book.plan.values()])
