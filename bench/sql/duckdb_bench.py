"""Times a Nexmark query in DuckDB as a batch job over a JSON lines file of events
(2 threads, read_ndjson), materializing the result. Prints the seconds it took."""
import sys, time
import duckdb

QUERIES = {
    "q0": "SELECT Bid.auction, Bid.bidder, Bid.price, Bid.date_time, Bid.extra FROM ev WHERE Bid IS NOT NULL",
    "q1": "SELECT Bid.auction, Bid.bidder, 0.908 * Bid.price AS price, Bid.date_time, Bid.extra FROM ev WHERE Bid IS NOT NULL",
    "q2": "SELECT Bid.auction, Bid.price FROM ev WHERE Bid IS NOT NULL AND Bid.auction % 123 = 0",
    "q3": "SELECT P.name, P.city, P.state, A.id FROM (SELECT Auction.* FROM ev WHERE Auction IS NOT NULL) A "
          "JOIN (SELECT Person.* FROM ev WHERE Person IS NOT NULL) P ON A.seller = P.id "
          "WHERE A.category = 10 AND P.state IN ('or', 'id', 'ca')",
    "q4": "WITH a AS (SELECT Auction.id AS id, Auction.category AS category, Auction.date_time AS t, "
          "Auction.expires AS expires FROM ev WHERE Auction IS NOT NULL), "
          "b AS (SELECT Bid.auction AS auction, Bid.price AS price, Bid.date_time AS t FROM ev WHERE Bid IS NOT NULL), "
          "q AS (SELECT max(b.price) AS final, a.category FROM a JOIN b ON a.id = b.auction "
          "WHERE b.t BETWEEN a.t AND a.expires GROUP BY a.id, a.category) "
          "SELECT category, avg(final) FROM q GROUP BY category",
    "q5": "WITH b AS (SELECT Bid.auction AS auction, Bid.date_time AS t FROM ev WHERE Bid IS NOT NULL), "
          "w AS (SELECT auction, (t - t % 2000) - 2000 * i AS s FROM b, range(5) r(i)), "
          "c AS (SELECT auction, s, count(*) AS num FROM w GROUP BY 1, 2), "
          "m AS (SELECT s, max(num) AS maxn FROM c GROUP BY 1) "
          "SELECT c.auction, c.num FROM c JOIN m ON c.s = m.s AND c.num >= m.maxn",
    "q7": "WITH b AS (SELECT Bid.* FROM ev WHERE Bid IS NOT NULL), "
          "m AS (SELECT date_time - date_time % 10000 + 10000 AS e, max(price) AS maxprice FROM b GROUP BY 1) "
          "SELECT b.auction, b.price, b.bidder, b.date_time, b.extra FROM b JOIN m ON b.price = m.maxprice "
          "WHERE b.date_time BETWEEN m.e - 10000 AND m.e",
    "q8": "WITH p AS (SELECT Person.id AS id, Person.name AS name, Person.date_time - Person.date_time % 10000 AS s "
          "FROM ev WHERE Person IS NOT NULL GROUP BY 1, 2, 3), "
          "a AS (SELECT Auction.seller AS seller, Auction.date_time - Auction.date_time % 10000 AS s "
          "FROM ev WHERE Auction IS NOT NULL GROUP BY 1, 2) "
          "SELECT p.id, p.name, p.s FROM p JOIN a ON p.id = a.seller AND p.s = a.s",
    "q5t": "SELECT Bid.auction, time_bucket(INTERVAL 10 SECOND, to_timestamp(Bid.date_time / 1000)) AS w, count(*) FROM ev WHERE Bid IS NOT NULL GROUP BY 1, 2",
}

def main():
    query, path = sys.argv[1], sys.argv[2]
    con = duckdb.connect()
    con.execute("SET threads = 2")
    columns = ("{'Person': 'STRUCT(id BIGINT, name VARCHAR, city VARCHAR, state VARCHAR, date_time BIGINT)', "
               "'Auction': 'STRUCT(id BIGINT, seller BIGINT, category BIGINT, date_time BIGINT, expires BIGINT)', "
               "'Bid': 'STRUCT(auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time BIGINT, extra VARCHAR)'}")
    started = time.perf_counter()
    con.execute(f"CREATE TEMP VIEW ev AS SELECT * FROM read_ndjson('{path}', columns={columns})")
    con.execute(f"CREATE TEMP TABLE result AS {QUERIES[query]}")
    print(f"{time.perf_counter() - started:.3f}")

main()
