-- Bids per auction per 10-second tumbling window (a window aggregation).
CREATE TABLE out (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO out
SELECT auction, window_start, COUNT(*) AS bids
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;
