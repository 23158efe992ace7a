import Database from "better-sqlite3";
import { Application, type ExecutionContext } from "ociapp";
import { z } from "zod";

// Products held in an in-memory SQLite database, through better-sqlite3: a native module (C++ and the
// SQLite amalgamation) that a managed build compiles in a builder stage of the image, against the
// image's own Node, and copies into a final image without the compiler.

const Product = z.object({
  name: z.string().min(1).max(200),
  category: z.string().min(1).max(100),
  /** in cents */
  price: z.number().int().nonnegative(),
});

const SqliteRequest = z.discriminatedUnion("op", [
  /** adds products; answers how many the table holds now */
  z.object({ op: z.literal("insert"), products: z.array(Product).min(1).max(1000) }),
  /** the products of a category cheaper than maxPrice, cheapest first */
  z.object({
    op: z.literal("cheaper"),
    category: z.string(),
    maxPrice: z.number().int().nonnegative(),
  }),
  /** count, cheapest, dearest and average price per category */
  z.object({ op: z.literal("summary") }),
]);

const CategorySummary = z.object({
  category: z.string(),
  count: z.number(),
  min: z.number(),
  max: z.number(),
  average: z.number(),
});

const SqliteResponse = z.union([
  z.object({ count: z.number() }),
  z.object({ products: z.array(Product) }),
  z.object({ sqlite: z.string(), categories: z.array(CategorySummary) }),
]);

type Request = z.infer<typeof SqliteRequest>;
type Response = z.infer<typeof SqliteResponse>;

const SEED: z.infer<typeof Product>[] = [
  { name: "espresso", category: "coffee", price: 250 },
  { name: "flat white", category: "coffee", price: 380 },
  { name: "filter", category: "coffee", price: 300 },
  { name: "green", category: "tea", price: 280 },
  { name: "earl grey", category: "tea", price: 260 },
];

/**
 * One in-memory database per container: state lives as long as the container does (the runtime may
 * run several, and stops idle ones), so each container starts from the seed.
 */
export class SqliteApplication extends Application<typeof SqliteRequest, typeof SqliteResponse> {
  readonly request = SqliteRequest;
  readonly response = SqliteResponse;
  override readonly name = "sqlite-app";
  override readonly version = "0.1.0";

  readonly #db = new Database(":memory:");
  readonly #insert;
  readonly #count;
  readonly #cheaper;
  readonly #summary;

  constructor() {
    super();
    this.#db.exec(`
      CREATE TABLE products (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        category TEXT NOT NULL,
        price INTEGER NOT NULL CHECK (price >= 0)
      );
      CREATE INDEX products_by_category ON products (category, price);
    `);
    this.#insert = this.#db.prepare<[string, string, number]>(
      "INSERT INTO products (name, category, price) VALUES (?, ?, ?)",
    );
    this.#count = this.#db.prepare<[], { count: number }>("SELECT count(*) AS count FROM products");
    this.#cheaper = this.#db.prepare<[string, number], z.infer<typeof Product>>(
      "SELECT name, category, price FROM products WHERE category = ? AND price < ? ORDER BY price, name",
    );
    this.#summary = this.#db.prepare<[], z.infer<typeof CategorySummary>>(
      `SELECT category, count(*) AS count, min(price) AS min, max(price) AS max,
              round(avg(price), 2) AS average
         FROM products GROUP BY category ORDER BY category`,
    );
    this.#insertAll(SEED);
  }

  async execute(request: Request, _context: ExecutionContext): Promise<Response> {
    switch (request.op) {
      case "insert":
        this.#insertAll(request.products);
        return { count: this.#count.get()?.count ?? 0 };
      case "cheaper":
        return { products: this.#cheaper.all(request.category, request.maxPrice) };
      case "summary": {
        const version = this.#db.prepare<[], { v: string }>("SELECT sqlite_version() AS v").get();
        return { sqlite: version?.v ?? "unknown", categories: this.#summary.all() };
      }
    }
  }

  /** All or nothing: one transaction. */
  #insertAll(products: z.infer<typeof Product>[]): void {
    this.#db.transaction((rows: z.infer<typeof Product>[]) => {
      for (const row of rows) this.#insert.run(row.name, row.category, row.price);
    })(products);
  }
}

export const app = new SqliteApplication();
