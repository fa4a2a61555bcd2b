-- Nexmark q12, processing-time windows: the bids of each bidder in each 10 seconds of
-- wall-clock time, the windows over the time each bid is processed (PROCTIME()), not
-- its event time. The results depend on when the job runs.
CREATE TABLE nexmark_q12 (
    bidder BIGINT,
    bid_count BIGINT,
    starttime TIMESTAMP(3),
    endtime TIMESTAMP(3)
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q12
SELECT
    B.bidder,
    COUNT(*) AS bid_count,
    TUMBLE_START(B.p_time, INTERVAL '10' SECOND) AS starttime,
    TUMBLE_END(B.p_time, INTERVAL '10' SECOND) AS endtime
FROM (SELECT *, PROCTIME() AS p_time FROM bid) B
GROUP BY B.bidder, TUMBLE(B.p_time, INTERVAL '10' SECOND);
