-- A hall's default booking fees (issue 12, item 3: "per screening or venue default"): the
-- fees of a screening created in the hall without its own. Decimal strings, as given
-- ({"per_ticket": "0.50", "percent": "3"}): a hall has no currency, so they are converted
-- to minor units in each screening's currency when the screening is created, and the
-- screening keeps its own copy (changing a hall never changes a screening's prices).
ALTER TABLE halls ADD COLUMN default_fees jsonb;
