"""STAGE_TIMINGS=1: each booking's stages land in cinema_stage_seconds, winners (201) apart
from losers (409); off, nothing is recorded. Against a real server, PostgreSQL and Redis."""

from tests.test_observability import scrape, value

ROUTE = "/api/bookings/"


def _count(metrics, status, stage):
    return value(metrics, "cinema_stage_seconds_count", route=ROUTE, status=status, stage=stage)


async def test_stage_timings_split_a_winner_and_a_loser(make_api, users):
    api = await make_api(stage_timings=True)
    a, b = await users.create(2)
    screening = await api.new_screening()
    seat = screening.seat_ids[0]
    before = await scrape(api)
    assert (await api.book(a, screening.id, [seat])).status == 201
    assert (await api.book(b, screening.id, [seat])).status == 409
    after = await scrape(api)

    def delta(status, stage):
        return _count(after, status, stage) - _count(before, status, stage)

    winner = (
        "api.jwt",
        "api.rate_limit",
        "api.validation",
        "api.handler",
        "server.total",
        "catalogue.snapshot",
        "holds.claim",
        "pool.acquire",
        "store.create_booking",
        "events.created",
        "expiry.schedule",
    )
    for stage in winner:
        assert delta("201", stage) == 1, stage
    # The hold extension runs after the answer, in the background: no stage of the winner's.
    assert delta("201", "holds.hold_until") == 0
    for stage in ("holds.claim", "api.handler", "server.total"):
        assert delta("409", stage) == 1, stage
    assert delta("409", "store.create_booking") == 0  # the filter turned the loser away
    assert delta("409", "pool.acquire") == 0


async def test_stage_timings_off_records_nothing(api, users):
    [a] = await users.create(1)
    screening = await api.new_screening()
    before = await scrape(api)
    assert (await api.book(a, screening.id, [screening.seat_ids[0]])).status == 201
    after = await scrape(api)
    assert _count(after, "201", "server.total") == _count(before, "201", "server.total")
