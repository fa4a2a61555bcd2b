-- Updating results: the number of bids and the highest price of each auction, kept up
-- to date as bids arrive, in a compacted topic of the embedded log keyed by auction.
-- Run with: sluice run --init examples/nexmark/tables.sql examples/sql/bids-per-auction.sql
-- then read the latest row of each auction: sluice consume bids-per-auction
SET 'table.exec.state.ttl' = '1 h';

CREATE TABLE bids_per_auction (
    auction BIGINT,
    bids BIGINT,
    top BIGINT,
    PRIMARY KEY (auction) NOT ENFORCED
) WITH (
    'connector' = 'upsert-log',
    'topic' = 'bids-per-auction',
    'key.format' = 'json',
    'value.format' = 'json'
);

INSERT INTO bids_per_auction
SELECT auction, COUNT(*) AS bids, MAX(price) AS top
FROM bid
GROUP BY auction;
