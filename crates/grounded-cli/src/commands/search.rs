//! `grounded search`: ranked hits for a query.

use crate::cli::{GlobalArgs, SearchArgs};
use crate::context::{Context, collection_name};
use crate::output;

pub async fn run(global: &GlobalArgs, args: SearchArgs) -> anyhow::Result<()> {
    let context = Context::open(global).await?;
    let collection = collection_name(&args.collection.collection)?;
    let request = args.retrieval.request(collection, &args.query, args.top_k);

    let hits = context.search(&request).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&output::hits_json(&request.query, &hits))?
        );
    } else {
        output::print_hits(&request.query, &hits);
    }
    context.close().await;
    Ok(())
}
