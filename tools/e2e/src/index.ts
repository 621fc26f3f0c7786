export { type Mesh, type Name, startMesh } from "./mesh.js";
