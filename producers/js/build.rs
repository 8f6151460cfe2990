//! Link arguments a Node.js addon needs (undefined N-API symbols resolved by the host process).

fn main() {
    napi_build::setup();
}
