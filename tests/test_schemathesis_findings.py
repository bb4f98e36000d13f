"""Bugs Schemathesis found, pinned down so they stay fixed."""


async def test_a_huge_dict_key_is_not_echoed_whole_in_the_error(api):
    # The key named the field in the message: a 20 kB key gave a 40 kB error body that broke
    # the documented ErrorOut schema (message maxLength 10000).
    key = "0" * 20_000
    reply = await api.post(
        "/api/admin/screenings/",
        {
            "movie_id": 1,
            "hall_id": 1,
            "starts_at": "2030-01-01T00:00:00Z",
            "prices": {key: "1.00"},
            "currency": "usd",
        },
        token=api.staff_token,
    )
    assert reply.status == 400, reply
    error = reply.body["error"]
    assert error["code"] == "validation_error"
    assert len(error["message"]) < 300
    assert all(len(d["field"]) < 300 for d in error["details"])
    assert error["details"][0]["field"].startswith("prices." + "0" * 64 + "...")


async def test_the_reference_query_documents_a_length_a_url_can_carry(api, users):
    # The schema said maxLength 10000 (Model's default); Schemathesis sent 10,000 characters
    # and aiohttp refused the request line (> 8190 bytes) with a text/plain 400.
    document = (await api.get("/api/openapi.json")).body
    [reference] = [
        p
        for p in document["paths"]["/api/bookings/"]["get"]["parameters"]
        if p["name"] == "reference"
    ]
    [string] = [s for s in reference["schema"]["anyOf"] if s.get("type") == "string"]
    assert string["maxLength"] <= 64
    token = await users.one()
    reply = await api.get("/api/bookings/?reference=" + "A" * 65, token=token)
    assert reply.status == 400, reply
    assert reply.body["error"]["code"] == "validation_error"
