//! What only the Qdrant server backend has: collections made by other
//! clients of the same server. Runs only when `QDRANT_URL` is set.

use grounded_index::{DENSE_VECTOR, SPARSE_VECTOR};
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    CreateCollectionBuilder, Distance, SparseVectorParamsBuilder, SparseVectorsConfigBuilder,
    VectorParamsBuilder, VectorsConfigBuilder,
};

use crate::{DIM, Fixture, SPEC, assert_schema_mismatch, run_cleaning_up};

/// A client of the fixture's server that is not grounded's.
fn raw_client(fixture: &Fixture) -> Qdrant {
    let options = fixture.server_options().expect("a server fixture");
    Qdrant::from_url(&options.url)
        .api_key(options.api_key.clone())
        .skip_compatibility_check()
        .build()
        .expect("client")
}

/// Collections laid out otherwise than grounded lays them out (by a grounded
/// from before hybrid search, or by another tool) are refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_collection_of_another_layout_is_a_schema_mismatch() {
    let test = "a_collection_of_another_layout_is_a_schema_mismatch";
    let Some(fixture) = Fixture::server(test) else {
        return;
    };
    run_cleaning_up(&fixture, async {
        let client = raw_client(&fixture);
        let dense = |distance| VectorParamsBuilder::new(DIM as u64, distance);
        let layouts = [
            ("dense-only", Distance::Cosine, None, "bm25"),
            (
                "no-idf",
                Distance::Cosine,
                Some(SparseVectorParamsBuilder::default()),
                "IDF",
            ),
            (
                "euclid",
                Distance::Euclid,
                Some(
                    SparseVectorParamsBuilder::default()
                        .modifier(qdrant_client::qdrant::Modifier::Idf),
                ),
                "Euclid",
            ),
        ];

        for (base, distance, sparse, mentions) in layouts {
            let name = fixture.collection(base);
            let mut vectors = VectorsConfigBuilder::default();
            vectors.add_named_vector_params(DENSE_VECTOR, dense(distance));
            let mut request = CreateCollectionBuilder::new(&name).vectors_config(vectors);
            if let Some(sparse) = sparse {
                let mut config = SparseVectorsConfigBuilder::default();
                config.add_named_vector_params(SPARSE_VECTOR, sparse);
                request = request.sparse_vectors_config(config);
            }
            client.create_collection(request).await.expect("created");

            let err = fixture
                .index
                .ensure_collection(&name, SPEC)
                .await
                .unwrap_err();
            assert_schema_mismatch(&err, &name, mentions);
        }
    })
    .await;
}
