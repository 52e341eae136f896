//! Cases: citizen requests (求助/投诉/咨询) and their accept → transfer → supervise → feedback
//! workflow.
//!
//! Not built yet. The detect stage already tags request cues (`Analysis::requests`), which this
//! stage will consume.
