async def test_health(api):
    reply = await api.get("/health")
    assert reply.status == 200
    assert reply.body == {"status": "ok"}
