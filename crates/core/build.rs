fn main() {
    // sqlx::migrate! embeds migrations/postgres at compile time: rebuild when they change.
    println!("cargo:rerun-if-changed=../../migrations");
}
