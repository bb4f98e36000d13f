"""Typed keys under which the composition root hands the handlers their services."""

from __future__ import annotations

from aiohttp import web

from cinema.auth.service import AccountService
from cinema.booking.sandbox import SandboxPayments
from cinema.booking.service import BookingService
from cinema.booking.settlement import PaymentSettlement
from cinema.boxoffice.audit import AuditTrail
from cinema.boxoffice.report import Reports
from cinema.boxoffice.service import BoxOffice
from cinema.catalogue.service import CatalogueService
from cinema.live.service import LiveSeats
from cinema.pricing.service import PromoService
from cinema.refunds.screenings import ScreeningCancellation
from cinema.refunds.service import RefundService

ACCOUNTS = web.AppKey("accounts", AccountService)
CATALOGUE = web.AppKey("catalogue", CatalogueService)
BOOKINGS = web.AppKey("bookings", BookingService)
SETTLEMENT = web.AppKey("settlement", PaymentSettlement)
BOXOFFICE = web.AppKey("boxoffice", BoxOffice)
PROMOS = web.AppKey("promos", PromoService)
LIVE = web.AppKey("live", LiveSeats)
REFUNDS = web.AppKey("refunds", RefundService)
CANCELLATIONS = web.AppKey("cancellations", ScreeningCancellation)
SANDBOX = web.AppKey("sandbox", SandboxPayments)  # present in test mode only
# GET /api/config/: what the web app needs to know (cinema/api/webapp.py)
CLIENT_CONFIG: web.AppKey[dict[str, object]] = web.AppKey("client_config")
AUDIT = web.AppKey("audit", AuditTrail)
REPORTS = web.AppKey("reports", Reports)
