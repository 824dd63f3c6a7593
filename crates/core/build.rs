use std::fs;

fn main() {
    // sqlx::migrate! embeds migrations/postgres at compile time: rebuild when they change.
    println!("cargo:rerun-if-changed=../../migrations");
    // The SQLite runner lists its migrations by hand; it is told which files
    // the folder holds so that it refuses to run with one left out.
    let mut files: Vec<String> = fs::read_dir("../../migrations/sqlite")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".sql"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    println!(
        "cargo:rustc-env=SLUICE_SQLITE_MIGRATION_FILES={}",
        files.join(",")
    );
}
