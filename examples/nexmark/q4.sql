-- Nexmark q4, average price per category: the average of the winning (highest) bids
-- of the auctions of each category. A join, a GROUP BY whose results are updating
-- (each auction's highest bid so far), and a GROUP BY of those updates: each new
-- highest bid takes the one before back out of its category's average.
CREATE TABLE nexmark_q4 (
    id BIGINT,
    final BIGINT
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q4
SELECT Q.category, AVG(Q.final)
FROM (
    SELECT MAX(B.price) AS final, A.category
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.`dateTime` BETWEEN A.`dateTime` AND A.expires
    GROUP BY A.id, A.category
) Q
GROUP BY Q.category;
