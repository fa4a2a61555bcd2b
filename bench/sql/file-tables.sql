-- The Nexmark tables over a JSON lines file of events as `sluice generate` writes them
-- (the `nexmark` crate's format: {"Bid": {...}}, {"Person": {...}}, {"Auction": {...}}),
-- for the SQL benchmark (`scripts/sql-bench.sh` puts the file's path in place of
-- EVENTS_FILE). Times are milliseconds since the epoch in the file.
CREATE TABLE events (
    Person ROW<id BIGINT, name STRING, email_address STRING, credit_card STRING, city STRING,
               state STRING, date_time BIGINT, extra STRING>,
    Auction ROW<id BIGINT, item_name STRING, description STRING, initial_bid BIGINT, reserve BIGINT,
                date_time BIGINT, expires BIGINT, seller BIGINT, category BIGINT, extra STRING>,
    Bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
            date_time BIGINT, extra STRING>,
    `dateTime` AS TO_TIMESTAMP_LTZ(COALESCE(Bid.date_time, Auction.date_time, Person.date_time), 3),
    WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND
) WITH (
    'connector' = 'filesystem',
    'path' = 'EVENTS_FILE',
    'format' = 'json'
);

CREATE VIEW bid AS
SELECT Bid.auction, Bid.bidder, Bid.price, Bid.channel, Bid.url, `dateTime`, Bid.extra
FROM events WHERE Bid IS NOT NULL;

CREATE VIEW person AS
SELECT Person.id, Person.name, Person.email_address AS emailAddress, Person.credit_card AS creditCard,
       Person.city, Person.state, `dateTime`, Person.extra
FROM events WHERE Person IS NOT NULL;

CREATE VIEW auction AS
SELECT Auction.id, Auction.item_name AS itemName, Auction.description, Auction.initial_bid AS initialBid,
       Auction.reserve, `dateTime`, TO_TIMESTAMP_LTZ(Auction.expires, 3) AS expires, Auction.seller, Auction.category, Auction.extra
FROM events WHERE Auction IS NOT NULL;
