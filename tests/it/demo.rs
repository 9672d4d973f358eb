//! The README's demo: its data is generated here (run the ignored test to regenerate it), and the
//! demo config itself is run against its in-process emulator.

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, BooleanArray, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde_json::json;

use crate::harness::Lcg;

const CATEGORIES: [&str; 5] = ["books", "games", "garden", "kitchen", "tools"];

fn embedding(rng: &mut Lcg) -> Vec<f32> {
    (0..8).map(|_| (rng.below(2000) as f32 - 1000.0) / 1000.0).collect()
}

fn title(rng: &mut Lcg, i: usize) -> String {
    let adj = ["Compact", "Deluxe", "Classic", "Travel", "Smart", "北京"];
    let noun = ["kettle", "lamp, desk", "board game", "trowel", "\"pro\" drill", "novel"];
    format!("{} {} #{i}", adj[rng.below(6) as usize], noun[rng.below(6) as usize])
}

#[test]
#[ignore = "regenerates config/demo-data; run by hand"]
fn regenerate_demo_data() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo-data");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut rng = Lcg::new(2026);
    // Two CSV files of upserts, 2,500 rows each, with a few bad rows.
    for part in 0..2 {
        let mut csv = String::from("f_id,title,category,price,in_stock,tags,embedding,updated_at,location\n");
        for i in 0..2500 {
            let n = part * 2500 + i;
            let emb = serde_json::to_string(&embedding(&mut rng)).expect("json");
            let (id, price, emb) = match n {
                777 => (format!("p{n:05}"), "free".to_string(), emb), // wrong type
                1500 => (String::new(), "9.5".to_string(), emb),      // no key
                3333 => (format!("p{n:05}"), "3.25".to_string(), "[0.1,0.2]".to_string()), // wrong dimension
                _ => (
                    format!("p{n:05}"),
                    format!("{:.2}", rng.below(20000) as f32 / 100.0),
                    emb,
                ),
            };
            csv.push_str(&format!(
                "{id},\"{}\",{},{price},{},\"[\"\"{}\"\"]\",\"{}\",2026-11-{:02}T{:02}:00:00+08:00,\"{:.4},{:.4}\"\n",
                title(&mut rng, n).replace('"', "\"\""),
                CATEGORIES[rng.below(5) as usize],
                rng.below(2) == 0,
                CATEGORIES[rng.below(5) as usize],
                emb.replace('"', "\"\""),
                1 + rng.below(20),
                rng.below(24),
                116.0 + rng.below(1000) as f64 / 1000.0,
                39.0 + rng.below(1000) as f64 / 1000.0,
            ));
        }
        std::fs::write(dir.join(format!("products-{}.csv", part + 1)), csv).expect("write csv");
    }
    // One Parquet file of 2,000 more upserts (vectors as fixed_size_list<float32, 8>).
    let n = 2000;
    let ids: StringArray = (0..n).map(|i| Some(format!("p{:05}", 5000 + i))).collect();
    let titles: StringArray = (0..n).map(|i| Some(title(&mut rng, 5000 + i))).collect();
    let cats: StringArray = (0..n).map(|_| Some(CATEGORIES[rng.below(5) as usize])).collect();
    let prices: Float32Array = (0..n).map(|_| Some(rng.below(20000) as f32 / 100.0)).collect();
    let stock: BooleanArray = (0..n).map(|_| Some(rng.below(2) == 0)).collect();
    let mut tags = ListBuilder::new(StringBuilder::new());
    let mut emb = FixedSizeListBuilder::new(Float32Builder::new(), 8);
    for _ in 0..n {
        tags.values().append_value(CATEGORIES[rng.below(5) as usize]);
        tags.append(true);
        for x in embedding(&mut rng) {
            emb.values().append_value(x);
        }
        emb.append(true);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("f_id", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("price", DataType::Float32, true),
        Field::new("in_stock", DataType::Boolean, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), 8),
            true,
        ),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(ids),
        Arc::new(titles),
        Arc::new(cats),
        Arc::new(prices),
        Arc::new(stock),
        Arc::new(tags.finish()),
        Arc::new(emb.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).expect("batch");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(500))
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let file = std::fs::File::create(dir.join("products.parquet")).expect("create");
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    // A gzipped JSONL change feed: price updates, re-upserts, deletes, and two bad lines.
    let mut lines = String::new();
    for i in 0..1200 {
        let id = format!("p{:05}", rng.below(7000));
        let line = match i % 6 {
            0..=2 => {
                json!({"op": "update", "sku": id, "price": rng.below(20000) as f64 / 100.0, "in_stock": rng.below(2) == 0})
            }
            3 => json!({"op": "upsert", "sku": id, "title": title(&mut rng, i), "category": "garden", "price": 1.5,
                        "in_stock": true, "tags": ["sale"], "embedding": embedding(&mut rng)}),
            _ => json!({"op": "delete", "sku": id}),
        };
        lines.push_str(&line.to_string());
        lines.push('\n');
        if i == 600 {
            lines.push_str("{\"op\": \"update\", \"sku\": \"p00001\", \"price\": \n"); // broken JSON
        }
        if i == 900 {
            lines.push_str("{\"op\": \"merge\", \"sku\": \"p00002\"}\n"); // unknown op
        }
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(lines.as_bytes()).expect("gz");
    std::fs::write(dir.join("changes.jsonl.gz"), enc.finish().expect("gz")).expect("write gz");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_config_runs_to_completion() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = crate::harness::tempdir();
    // Run a copy so the test's state dir stays out of the checkout.
    let config = std::fs::read_to_string(root.join("config/demo.toml"))
        .expect("demo config")
        .replace(
            "dir = \"../state-demo\"",
            &format!("dir = \"{}\"", tmp.path().join("state").display()),
        )
        .replace("rows_per_second = 1500", "rows_per_second = 0");
    let cfg_path = root
        .join("config")
        .join(format!(".demo-test-{}.toml", std::process::id()));
    std::fs::write(&cfg_path, config).expect("write");
    let out = crate::harness::run_binary(tmp.path(), &["run", "--config", cfg_path.to_str().expect("utf8")]).await;
    let _ = std::fs::remove_file(&cfg_path);
    let shown = crate::harness::text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("rows read      8202"), "{shown}");
    // 5 rows are bad by construction; 12 updates in the change feed hit keys it deleted earlier,
    // which the server refuses (NotFound.Data) and the sender isolates by splitting.
    assert!(shown.contains("rejected       17"), "{shown}");
    assert!(shown.contains("read = applied + rejected: ok"), "{shown}");
    // The Parquet file comes after 5,000 CSV rows: vector_encoding = "auto" (the default) still
    // checks with its first row, and its vectors go packed.
    assert!(
        shown.contains("vectors        packed (base64): the server stored a packed vector exactly (row 1 of "),
        "{shown}"
    );
    let dead = crate::harness::dead_letters(tmp.path());
    assert_eq!(dead.len(), 17, "{dead:#?}");
    let refused = dead.iter().filter(|(_, _, e)| e["code"] == "NotFound.Data").count();
    assert_eq!(refused, 12, "{dead:#?}");
    assert!(
        dead.iter().any(|(f, r, _)| f == "products-1.csv" && *r == 778),
        "wrong type row"
    );
    assert!(
        dead.iter().any(|(f, r, _)| f == "changes.jsonl.gz" && *r == 602),
        "broken JSON line"
    );
}
