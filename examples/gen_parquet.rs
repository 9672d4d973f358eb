//! Deterministic benchmark data as Parquet: the rows `bench/gen.py` writes as CSV/JSONL, with the
//! same arguments and the same values.
//!
//! ```sh
//! cargo run --release --example gen_parquet -- --rows 50000 --dim 768 --wide \
//!     --row-group-rows 2000 --out /tmp/b/rows.parquet
//! ```
//!
//! Columns: `id` utf8 (the key), `title` utf8, `score` float32, `tags` list<utf8>, `vec`
//! list<float32> (`--vector fixed`: fixed_size_list<float32, dim>), and with `--wide` also `count`
//! int64, `ok` boolean and `at` utf8 (RFC 3339, a `date_time` field). `--rows`, `--dim`, `--keys`,
//! `--seed`, `--pool` and `--wide` mean what they mean to gen.py, and draw from the same two
//! LCG streams in the same order, so row i here is row i of gen.py's CSV and JSONL.
//!
//! Writing streams: rows are built in record batches of at most 1,024 rows and handed to the
//! Arrow writer, which holds one row group (`--row-group-rows`, default 2,000) at a time.
//! Compression: `--compression snappy` (default), `zstd` or `none`. The vector column is written
//! without dictionary encoding (embeddings do not repeat); the other columns use the writer's
//! default (dictionary where it pays). Prints `path rows bytes row_groups`.

use std::error::Error;
use std::fs::File;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, FixedSizeListBuilder, Float32Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

type Res<T> = Result<T, Box<dyn Error>>;

const BATCH_ROWS: usize = 1024;
const WORDS: [&str; 10] = [
    "alpha", "beta", "gamma", "delta", "north", "south", "red", "blue", "北京", "上海",
];
/// gen.py's WIDE_SEED_OFFSET, AT_EPOCH (2026-01-01T00:00:00Z) and AT_SPAN.
const WIDE_SEED_OFFSET: u64 = 0x5EED;
const AT_EPOCH: i64 = 1_767_225_600;
const AT_SPAN: u64 = 365 * 86_400;

/// gen.py's `Lcg`: Knuth's MMIX LCG, high bits.
struct Lcg(u64);

impl Lcg {
    const A: u64 = 6_364_136_223_846_793_005;
    const C: u64 = 1_442_695_040_888_963_407;

    fn new(seed: u64) -> Self {
        Lcg(seed.wrapping_mul(Self::A).wrapping_add(Self::C))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(Self::A).wrapping_add(Self::C);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, PartialEq)]
enum VectorKind {
    List,
    Fixed,
}

struct Args {
    rows: u64,
    dim: usize,
    keys: u64,
    seed: u64,
    pool: usize,
    wide: bool,
    row_group_rows: usize,
    out: String,
    compression: Compression,
    vector: VectorKind,
}

const USAGE: &str = "usage: gen_parquet --rows N --out FILE [--dim D (128)] [--keys K (rows)] [--seed S (1)] \
[--pool P (1024)] [--wide] [--row-group-rows R (2000)] [--compression snappy|zstd|none] [--vector list|fixed]";

fn parse_args() -> Res<Args> {
    let mut rows = None;
    let mut out = None;
    let mut a = Args {
        rows: 0,
        dim: 128,
        keys: 0,
        seed: 1,
        pool: 1024,
        wide: false,
        row_group_rows: 2000,
        out: String::new(),
        compression: Compression::SNAPPY,
        vector: VectorKind::List,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--wide" {
            a.wide = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--rows" => rows = Some(num(&value)?),
            "--dim" => a.dim = usize::try_from(num(&value)?)?,
            "--keys" => a.keys = num(&value)?,
            "--seed" => a.seed = num(&value)?,
            "--pool" => a.pool = usize::try_from(num(&value)?)?,
            "--row-group-rows" => a.row_group_rows = usize::try_from(num(&value)?)?,
            "--out" => out = Some(value),
            "--compression" => {
                a.compression = match value.as_str() {
                    "snappy" => Compression::SNAPPY,
                    "zstd" => Compression::ZSTD(ZstdLevel::default()),
                    "none" => Compression::UNCOMPRESSED,
                    other => return Err(format!("--compression {other}: snappy, zstd or none").into()),
                }
            }
            "--vector" => {
                a.vector = match value.as_str() {
                    "list" => VectorKind::List,
                    "fixed" => VectorKind::Fixed,
                    other => return Err(format!("--vector {other}: list or fixed").into()),
                }
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    a.rows = rows.ok_or(USAGE)?;
    a.out = out.ok_or(USAGE)?;
    if a.dim == 0 || a.pool == 0 || a.row_group_rows == 0 {
        return Err("--dim, --pool and --row-group-rows must be at least 1".into());
    }
    if a.keys == 0 {
        a.keys = a.rows.max(1);
    }
    Ok(a)
}

/// gen.py's `vector_pool`: `size` vectors of `dim` elements, each (below(2049) - 1024) / 64.
fn vector_pool(rng: &mut Lcg, dim: usize, size: usize) -> Vec<Vec<f32>> {
    (0..size)
        .map(|_| (0..dim).map(|_| (rng.below(2049) as f32 - 1024.0) / 64.0).collect())
        .collect()
}

fn schema(a: &Args) -> Schema {
    let item = |t: DataType| Arc::new(Field::new("item", t, true));
    let vec_type = match a.vector {
        VectorKind::List => DataType::List(item(DataType::Float32)),
        VectorKind::Fixed => DataType::FixedSizeList(item(DataType::Float32), a.dim as i32),
    };
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
        Field::new("tags", DataType::List(item(DataType::Utf8)), false),
        Field::new("vec", vec_type, false),
    ];
    if a.wide {
        fields.push(Field::new("count", DataType::Int64, false));
        fields.push(Field::new("ok", DataType::Boolean, false));
        fields.push(Field::new("at", DataType::Utf8, false));
    }
    Schema::new(fields)
}

/// One record batch's columns, filled row by row.
struct Columns {
    id: StringBuilder,
    title: StringBuilder,
    score: Float32Builder,
    tags: ListBuilder<StringBuilder>,
    vec_list: ListBuilder<Float32Builder>,
    vec_fixed: FixedSizeListBuilder<Float32Builder>,
    count: Int64Builder,
    ok: BooleanBuilder,
    at: StringBuilder,
}

impl Columns {
    fn new(dim: usize) -> Self {
        Columns {
            id: StringBuilder::new(),
            title: StringBuilder::new(),
            score: Float32Builder::new(),
            tags: ListBuilder::new(StringBuilder::new()),
            vec_list: ListBuilder::new(Float32Builder::new()),
            vec_fixed: FixedSizeListBuilder::new(Float32Builder::new(), dim as i32),
            count: Int64Builder::new(),
            ok: BooleanBuilder::new(),
            at: StringBuilder::new(),
        }
    }

    fn finish(&mut self, schema: &Arc<Schema>, a: &Args) -> Res<RecordBatch> {
        let vec: ArrayRef = match a.vector {
            VectorKind::List => Arc::new(self.vec_list.finish()),
            VectorKind::Fixed => Arc::new(self.vec_fixed.finish()),
        };
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.title.finish()),
            Arc::new(self.score.finish()),
            Arc::new(self.tags.finish()),
            vec,
        ];
        if a.wide {
            cols.push(Arc::new(self.count.finish()));
            cols.push(Arc::new(self.ok.finish()));
            cols.push(Arc::new(self.at.finish()));
        }
        Ok(RecordBatch::try_new(schema.clone(), cols)?)
    }
}

fn main() -> Res<()> {
    let a = parse_args()?;
    let schema = Arc::new(schema(&a));

    // No dictionary for the vector's leaf column(s): real embeddings do not repeat.
    let mut props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(a.row_group_rows))
        .set_compression(a.compression);
    let descr = ArrowSchemaConverter::new().convert(&schema)?;
    for col in descr.columns() {
        if col.path().parts().first().is_some_and(|p| p == "vec") {
            props = props.set_column_dictionary_enabled(col.path().clone(), false);
        }
    }

    if let Some(dir) = std::path::Path::new(&a.out)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)?;
    }
    let file = File::create(&a.out).map_err(|e| format!("{}: {e}", a.out))?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props.build()))?;

    let mut rng = Lcg::new(a.seed);
    let mut rng2 = Lcg::new(a.seed.wrapping_add(WIDE_SEED_OFFSET));
    let pool = vector_pool(&mut rng, a.dim, a.pool);
    let mut cols = Columns::new(a.dim);
    let mut in_batch = 0usize;
    let mut title = String::new();
    for i in 0..a.rows {
        // The draws, in gen.py's order: two words, the item number, the score, the tag count and
        // the tags, the vector; then (--wide, second stream) count, ok, at.
        let w1 = WORDS[rng.below(WORDS.len() as u64) as usize];
        let w2 = WORDS[rng.below(WORDS.len() as u64) as usize];
        let item = rng.below(100_000);
        let score = (rng.below(16_001) as f32 - 8000.0) / 8.0;
        cols.id.append_value(format!("k{:07}", i % a.keys));
        title.clear();
        use std::fmt::Write as _;
        write!(title, "{w1} {w2}, item \"{item}\"")?;
        cols.title.append_value(&title);
        cols.score.append_value(score);
        let ntags = 1 + rng.below(3);
        for _ in 0..ntags {
            let t = rng.below(50);
            cols.tags.values().append_value(format!("t{t}"));
        }
        cols.tags.append(true);
        let v = &pool[rng.below(a.pool as u64) as usize];
        match a.vector {
            VectorKind::List => {
                cols.vec_list.values().append_slice(v);
                cols.vec_list.append(true);
            }
            VectorKind::Fixed => {
                cols.vec_fixed.values().append_slice(v);
                cols.vec_fixed.append(true);
            }
        }
        if a.wide {
            let count = rng2.next() as i64 * 1024 - 1_000_000_000_000;
            let ok = rng2.below(2) == 1;
            let secs = AT_EPOCH + rng2.below(AT_SPAN) as i64;
            let at = chrono::DateTime::from_timestamp(secs, 0).ok_or("timestamp out of range")?;
            cols.count.append_value(count);
            cols.ok.append_value(ok);
            cols.at.append_value(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        in_batch += 1;
        if in_batch == BATCH_ROWS {
            writer.write(&cols.finish(&schema, &a)?)?;
            in_batch = 0;
        }
    }
    if in_batch > 0 {
        writer.write(&cols.finish(&schema, &a)?)?;
    }
    let meta = writer.close()?;
    let bytes = std::fs::metadata(&a.out)?.len();
    println!("{} {} {} {}", a.out, a.rows, bytes, meta.num_row_groups());
    Ok(())
}
