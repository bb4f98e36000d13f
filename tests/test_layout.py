"""The hall layout parser: short form, full form, and the reasons a layout is refused."""

import pytest

from cinema.catalogue.layout import LayoutError, parse_layout


def test_short_form():
    layout, seats = parse_layout({"rows": [{"label": "A", "seats": 3}, {"label": "B", "seats": 2}]})
    assert [(s.row_label, s.number, s.category) for s in seats] == [
        ("A", 1, "standard"),
        ("A", 2, "standard"),
        ("A", 3, "standard"),
        ("B", 1, "standard"),
        ("B", 2, "standard"),
    ]
    assert layout["rows"][0]["seats"][0] == {"number": 1, "category": "standard"}


def test_full_form_with_aisles_and_categories():
    layout, seats = parse_layout(
        {
            "rows": [
                {
                    "label": "A",
                    "seats": [{"number": 1, "category": "accessible"}, None, 2, 3],
                },
                {"label": "B", "category": "vip", "seats": [1, {"number": 2}]},
            ]
        }
    )
    assert [(s.row_label, s.number, s.position, s.category) for s in seats] == [
        ("A", 1, 0, "accessible"),
        ("A", 2, 2, "standard"),
        ("A", 3, 3, "standard"),
        ("B", 1, 0, "vip"),
        ("B", 2, 1, "vip"),
    ]
    assert layout["rows"][0]["seats"][1] is None


@pytest.mark.parametrize(
    ("layout", "reason"),
    [
        ({"rows": []}, "rows: must not be empty"),
        ({}, "rows"),
        ({"rows": [{"label": "A", "seats": 2}, {"label": "A", "seats": 3}]}, "more than once"),
        ({"rows": [{"label": "A", "seats": 0}]}, "seats"),
        ({"rows": [{"label": "A", "seats": [None, None]}]}, "no seats"),
        ({"rows": [{"label": "A", "seats": [1, 1]}]}, "seat 1 more than once"),
        ({"rows": [{"label": "A", "seats": 10_000}]}, "seats"),
        ({"rows": [{"label": f"R{i}", "seats": 100} for i in range(60)]}, "at most 5000"),
        ({"rows": [{"label": "", "seats": 2}]}, "label"),
        ({"rows": [{"label": "A", "seats": [{"number": 1, "category": "VIP!"}]}]}, "category"),
        ({"rows": [{"label": "A", "seats": 2, "extra": 1}]}, "extra"),
        ("not a layout", "the layout must be an object"),
    ],
)
def test_invalid_layouts_say_why(layout, reason):
    with pytest.raises(LayoutError, match=reason):
        parse_layout(layout)
